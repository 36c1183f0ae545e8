#!/usr/bin/env bash
# Requests per second to the paper broker over HTTPS: the broker worker's
# connection reuse (keep-alive + TLS session sharing, worker/broker_http.c)
# against a new connection per request, interleaved in one run.
#   bench/worker_http_bench.sh [seconds-per-round] [rounds] [in-flight]
# Needs a built broker/paper-broker, libcurl and openssl.  Results:
# docs/WORKER.md.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $broker_pid 2>/dev/null || true; rm -rf "$work"' EXIT

cc -O2 -Wall -o "$work/bench" "$src/bench/worker_http_bench.c" -lcurl
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
"$src/broker/paper-broker" --port 0 --admin-port -1 --port-file "$work/port" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --no-rate-limit \
    --tick-ms 0 --quiet --log /dev/null &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(cat "$work/port")
echo "paper broker (TLS) on port $port; $(nproc) cores; $(date -u +%FT%TZ)"
BENCH_AUTH="Authorization: token paper_api_key:paper_access_token" \
    "$work/bench" "https://127.0.0.1:$port/user/margins" "$work/cert.pem" \
    "${1:-3}" "${2:-4}" "${3:-6}"

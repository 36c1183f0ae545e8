#!/bin/sh
# bench/broker_rps.sh - throughput and leak check of the paper broker.
#
#   bench/broker_rps.sh [DURATION_S] [CONNECTIONS]
#
# 1. req/s over keep-alive on loopback with wrk (2 threads, C connections,
#    default 8) against /quote/ltp, /portfolio/positions and /orders, rate
#    limits off, request log off, price ticker on (250 ms).  Target: 2000/s.
# 2. leak check: RSS of the broker after a warm-up, after 100000 keep-alive
#    requests (ab -k) and after 100000 more; flat RSS = no leak.
# 3. valgrind --leak-check=full over a shorter mixed run (orders, faults,
#    TLS-less), reporting "definitely lost" / "indirectly lost".
# Needs wrk and ab (apache2-utils); valgrind is optional.
set -eu
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONNS=${2:-8}
BIN=${PAPER_BROKER:-broker/paper-broker}
[ -x "$BIN" ] || make -s -C broker >/dev/null
TMP=$(mktemp -d)
BPID=
trap 'if [ -n "$BPID" ]; then kill $BPID 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT INT TERM
AUTH='Authorization: token paper_api_key:paper_access_token'

start() {	# start [wrapper...] -- broker args: sets BPID, PORT, APORT
	rm -f "$TMP/port" "$TMP/aport"
	"$@" "$BIN" --port 0 --admin-port 0 --port-file "$TMP/port" \
		--admin-port-file "$TMP/aport" --no-rate-limit --quiet $EXTRA >"$TMP/out" 2>&1 &
	BPID=$!
	i=0
	while [ ! -s "$TMP/port" ] || [ ! -s "$TMP/aport" ]; do
		i=$((i + 1)); [ $i -lt 600 ] || { cat "$TMP/out"; exit 1; }
		sleep 0.1
	done
	PORT=$(cat "$TMP/port"); APORT=$(cat "$TMP/aport")
}
stop() { kill -TERM $BPID; wait $BPID || true; BPID=; }
rss() { awk '/VmRSS/ {print $2}' /proc/$BPID/status; }
stat() { curl -s "http://127.0.0.1:$APORT/admin/stats"; }

echo "== paper broker bench: $(nproc) cores, ${DUR}s per run, $CONNS keep-alive connections"
for THREADS in ${BENCH_THREADS:-0 2}; do
	EXTRA="--threads $THREADS"
	start
	for P in '/quote/ltp?i=NSE:INFY&i=NSE:SBIN' /portfolio/positions /orders; do
		RPS=$(wrk -t2 -c"$CONNS" -d"${DUR}s" -H "$AUTH" -H 'X-Kite-Version: 3' \
			"http://127.0.0.1:$PORT$P" | awk '/Requests\/sec/ {print $2}')
		printf 'threads=%s %-36s %10s req/s\n' "$([ "$THREADS" = 0 ] && echo per-conn || echo "$THREADS")" "$P" "$RPS"
	done
	stat | jq -c '.data.connections | {opened, reused_share, max_requests_per_connection}'
	stop
done

echo "== leak check: RSS (kB) around 2 x 100000 keep-alive requests"
EXTRA=""
start
ab -q -k -n 2000 -c 4 -H "$AUTH" "http://127.0.0.1:$PORT/user/margins" >/dev/null
R0=$(rss)
for ROUND in 1 2; do
	ab -q -k -n 40000 -c 4 -H "$AUTH" "http://127.0.0.1:$PORT/quote/ltp?i=NSE:INFY" >/dev/null
	ab -q -k -n 30000 -c 4 -H "$AUTH" "http://127.0.0.1:$PORT/portfolio/positions" >/dev/null
	ab -q -k -n 30000 -c 4 -H "$AUTH" "http://127.0.0.1:$PORT/user/margins" >/dev/null
	eval "R$ROUND=\$(rss)"
done
echo "requests served: $(stat | jq .data.requests)"
echo "RSS after warm-up: $R0 kB, after 100000: $R1 kB, after 200000: $R2 kB (growth in the 2nd 100000: $((R2 - R1)) kB)"
stop

if command -v valgrind >/dev/null; then
	echo "== valgrind --leak-check=full over a mixed run"
	EXTRA="--tick-ms 50"
	start valgrind --leak-check=full --errors-for-leak-kinds=definite --log-file="$TMP/vg.log"
	ab -q -k -n 3000 -c 2 -H "$AUTH" "http://127.0.0.1:$PORT/quote?i=NSE:INFY&i=BSE:SENSEX" >/dev/null
	ab -q -n 500 -c 2 -H "$AUTH" "http://127.0.0.1:$PORT/portfolio/holdings" >/dev/null
	for i in $(seq 1 50); do
		curl -s -H "$AUTH" -d tradingsymbol=INFY -d exchange=NSE -d transaction_type=BUY \
			-d order_type=LIMIT -d price=1 -d quantity=1 -d product=MIS \
			"http://127.0.0.1:$PORT/orders/regular" >/dev/null
	done
	curl -s -H "$AUTH" "http://127.0.0.1:$PORT/orders" >/dev/null
	curl -s -d truncate_rate=0.3 -d drop_rate=0.1 -d fail_rate=0.2 "http://127.0.0.1:$APORT/admin/faults" >/dev/null
	ab -q -k -n 1000 -c 2 -H "$AUTH" "http://127.0.0.1:$PORT/user/margins" >/dev/null 2>&1 || true
	echo "requests served under valgrind: $(stat | jq .data.requests)"
	curl -s -X POST "http://127.0.0.1:$APORT/admin/reset" >/dev/null
	stop
	grep -E 'in use at exit|All heap blocks|definitely lost|indirectly lost|possibly lost|ERROR SUMMARY' "$TMP/vg.log" | sed 's/^==[0-9]*== //'
fi

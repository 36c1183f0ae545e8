#!/usr/bin/env bash
# Historical candles, the real Kite budget: a backfill of one year of
# minute candles for 3 instruments against the paper broker at its default
# 3 requests/s with Kite's range limits (60 days per minute request), and
# the upsert's speed.
#   bench/market_candles.sh [years]
# Prints: requests, 429s, the share of the 3/s budget used (a sliding
# window allows n requests in floor((n-1)/3) s at best), rows; then rows/s
# of trading._backfill_apply (parse, validate, upsert) on a 60-day minute
# reply, first insert and re-upsert of the same rows, against a plain
# INSERT ... SELECT of the same rows into the same table as the baseline.
# Results: docs/MARKET_DATA.md.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/bench/lib.sh"
years=${1:-1}
work=$(mktemp -d)
chmod 755 "$work"
cleanup() { kill "$broker_pid" 2>/dev/null || true; bench_cluster_stop; rm -rf "$work"; }
trap cleanup EXIT

"$src/broker/paper-broker" --port 0 --admin-port 0 --port-file "$work/port" \
    --admin-port-file "$work/admin" --tick-ms 0 --quiet --log /dev/null &
broker_pid=$!
for _ in $(seq 200); do [ -s "$work/admin" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$work/port")"
admin="http://127.0.0.1:$(cat "$work/admin")"

bench_cluster_start market_candles "trading.broker_url = '$url'
trading.key_command = 'echo 1:$(printf '5a%.0s' $(seq 32))'"
trap cleanup EXIT       # bench_cluster_start set its own
bench_psql -c 'CREATE EXTENSION trading'
bench_psql -c 'SELECT trading.refresh_instruments()' >/dev/null
echo "paper broker at 3 historical requests/s; $(nproc) cores; $(date -u +%FT%TZ)"

stat() { curl -sf "$admin/admin/stats" | python3 -c "import json,sys; d=json.load(sys.stdin)['data']; print($1)"; }
served0=$(stat "d['historical']['served']")
bench_psql -c "SELECT trading.set_broker_session('paper_api_key', 'paper_access_token')" >/dev/null
bench_psql -At -c "SELECT trading.fetch_candles(s, 'minute', '2025-01-01 00:00+05:30'::timestamptz - interval '$years years' + interval '1 year',
                                                '2025-12-31 23:59:59+05:30')
                     FROM unnest(ARRAY['NSE:INFY', 'NSE:SBIN', 'NSE:TCS']) s" >/dev/null
t0=$(date +%s.%N)
until [ "$(bench_psql -At -c "SELECT bool_and(state IN ('done', 'failed')) FROM trading.backfill_jobs")" = t ]; do
    sleep 0.2
done
t1=$(date +%s.%N)
bench_psql -c "SELECT id, instrument, state, requests_done || '/' || requests_total AS requests, rows, errors,
                      finished_at - started_at AS took FROM trading.backfill_jobs ORDER BY id"
n=$(( $(stat "d['historical']['served']") - served0 ))
r429=$(stat "d['rate_limited']['historical']")
first=$(bench_psql -At -c "SELECT extract(epoch FROM min(started_at)) FROM trading.backfill_jobs")
last=$(stat "d['historical']['last_served']")
rows=$(bench_psql -At -c "SELECT sum(rows) FROM trading.backfill_jobs")
python3 - "$n" "$r429" "$first" "$last" "$rows" "$t0" "$t1" <<'PY'
import sys
n, r429, first, last, rows, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:6]), float(sys.argv[6]), float(sys.argv[7])
span = last - first
ideal = (n - 1) // 3
print(f"{n} requests, {r429} answered 429, first to last request {span:.2f} s "
      f"(best possible {ideal} s): {100 * ideal / span:.1f}% of the 3/s budget")
print(f"{int(rows)} candles in {t1 - t0:.1f} s wall time")
PY

# ---- upsert speed: one 60-day minute reply ----
curl -sf -H 'X-Kite-Version: 3' -H 'Authorization: token paper_api_key:paper_access_token' \
    "$url/instruments/historical/408065/minute?from=2024-01-01+00:00:00&to=2024-02-29+23:59:59" > "$work/reply.json"
sleep 1
chmod 644 "$work/reply.json"
bench_psql -q <<SQL
\set body \`cat $work/reply.json\`
CREATE TABLE public.bench_reply AS SELECT :'body'::text AS body;
CREATE TABLE public.bench_rows AS
    SELECT (c->>0)::timestamptz AS ts, (c->>1)::numeric AS o, (c->>2)::numeric AS h,
           (c->>3)::numeric AS l, (c->>4)::numeric AS c, (c->>5)::bigint AS v
      FROM public.bench_reply, jsonb_array_elements(body::jsonb->'data'->'candles') c;
SQL
cands=$(bench_psql -At -c 'SELECT count(*) FROM public.bench_rows')
bench_psql -c "SELECT trading._candles_partitions('2024-01-01', '2024-03-01')" >/dev/null
job() { bench_psql -At -c "INSERT INTO trading.backfill_queue (instrument, instrument_token, \"interval\", from_ts, to_ts, state, chunk_days, requests_total)
                           VALUES ('bench', $1, 'minute', '2024-01-01', '2024-03-01', 'running', 60, 1) RETURNING id" | head -1; }
ms() { bench_psql -c '\timing on' -c "$1" | awk '/^Time: / {t=$2} END {print t}'; }
: > "$work/base"; : > "$work/ins"; : > "$work/ups"
for r in 1 2 3 4 5; do
    ms "INSERT INTO trading.candles SELECT $((100 + r)), 'minute', ts, o, h, l, c, v, NULL FROM public.bench_rows" >> "$work/base"
    j=$(job $((200 + r)))
    ms "SELECT trading._backfill_apply($j, 0, body) FROM public.bench_reply" >> "$work/ins"
    bench_psql -c "UPDATE trading.backfill_queue SET state = 'running', requests_done = 0 WHERE id = $j"
    ms "SELECT trading._backfill_apply($j, 0, body) FROM public.bench_reply" >> "$work/ups"
done
b=$(median < "$work/base"); i=$(median < "$work/ins"); u=$(median < "$work/ups")
python3 - "$cands" "$b" "$i" "$u" <<'PY'
import sys
n, b, i, u = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"one reply of {n} minute candles ({n / 375:.0f} days), median of 5:")
print(f"  INSERT ... SELECT of parsed rows (baseline) {b:8.1f} ms  {n / b * 1000:9.0f} rows/s")
print(f"  _backfill_apply, new rows                   {i:8.1f} ms  {n / i * 1000:9.0f} rows/s  {i / b:.2f}x")
print(f"  _backfill_apply, the same rows again        {u:8.1f} ms  {n / u * 1000:9.0f} rows/s  {u / b:.2f}x")
PY

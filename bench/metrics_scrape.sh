#!/usr/bin/env bash
# Scrape time of prometheus-postgres-exporter with monitoring/queries.yaml,
# with 100 endpoints in the histogram and 10000 positions (and 10000 orders)
# in the broker tables.  Baseline, in the same run and interleaved: the same
# exporter binary without the queries file (its own overhead and Go metrics).
# Prints the median and 95th percentile of ROUNDS scrapes of each (curl's
# time_total), the difference (what the trading queries cost) and the
# exporter's own pg_exporter_last_scrape_duration_seconds.  Target: a scrape
# under 50 ms.  BENCH_HOLD=file.sql runs that psql script against the
# cluster before the scrapes (e.g. \timing and the views, to see which
# query costs what).  Run as root after scripts/setup.sh (or as postgres).
# Results: docs/MONITORING.md, "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-50}
ENDPOINTS=${ENDPOINTS:-100}
POSITIONS=${POSITIONS:-10000}
BENCH_PORT=${BENCH_PORT:-55473}
EXPORTER=${EXPORTER:-/usr/bin/prometheus-postgres-exporter}
P1=${P1:-59187}
P2=${P2:-59188}
QUERIES=$(pwd)/monitoring/queries.yaml

bench_cluster_start metrics_scrape "trading.broker_worker = off"
bench_psql <<SQL
CREATE EXTENSION trading;
CREATE ROLE exporter LOGIN IN ROLE trading_reader, pg_monitor;
INSERT INTO trading.positions (kind, exchange, tradingsymbol, product, quantity, pnl, m2m, raw)
SELECT 'net', 'NSE', 'SYM' || i, 'MIS', CASE WHEN i % 2 = 0 THEN 0 ELSE i % 7 + 1 END,
       (i % 13) - 6, (i % 11) - 5, jsonb_build_object('tradingsymbol', 'SYM' || i)
FROM generate_series(1, $POSITIONS) i;
INSERT INTO trading.orders (order_id, status, transaction_type, raw)
SELECT i::text, (ARRAY['COMPLETE', 'OPEN', 'CANCELLED', 'REJECTED'])[i % 4 + 1],
       CASE WHEN i % 2 = 0 THEN 'BUY' ELSE 'SELL' END, '{}'
FROM generate_series(1, $POSITIONS) i;
SELECT count(trading.record_api_request('endpoint' || (i % $ENDPOINTS), (i % 1000) / 100.0,
                                        (ARRAY[200, 200, 200, 429, 503])[i % 5 + 1]))
FROM generate_series(1, 100000) i;
SELECT count(trading.record_exception('kind' || (i % 20))) FROM generate_series(1, 1000) i;
SELECT count(trading.record_trade(CASE WHEN i % 2 = 0 THEN 'BUY' ELSE 'SELL' END, 'status' || (i % 5)))
FROM generate_series(1, 1000) i;
ANALYZE;
SQL

cleanup() {
    for f in "$BENCH_DIR"/exporter-*.pid; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    bench_cluster_stop
}
trap cleanup EXIT
[ -n "${BENCH_HOLD:-}" ] && { bench_psql -f "$BENCH_HOLD"; }
DSN="host=$BENCH_DIR port=$BENCH_PORT user=exporter dbname=postgres sslmode=disable"
start_exporter() {   # NAME PORT [extra args]: the exporter's own pid in NAME.pid
    local name=$1 port=$2; shift 2
    as_postgres sh -c 'echo $$ > "$0"; dsn=$1 bin=$2; shift 2; exec env DATA_SOURCE_NAME="$dsn" "$bin" "$@"' \
        "$BENCH_DIR/exporter-$name.pid" "$DSN" "$EXPORTER" --web.listen-address=127.0.0.1:$port \
        --disable-default-metrics --disable-settings-metrics "$@" \
        >"$BENCH_DIR/exporter-$name.log" 2>&1 &
}
start_exporter trading $P1 --extend.query-path="$QUERIES"
start_exporter baseline $P2
for p in $P1 $P2; do
    for _ in $(seq 100); do curl -sf "127.0.0.1:$p/metrics" >/dev/null && break; sleep 0.1; done
done
curl -s "127.0.0.1:$P1/metrics" > "$BENCH_DIR/scrape.txt"     # warm-up; connections open
curl -s "127.0.0.1:$P2/metrics" >/dev/null

: > "$BENCH_DIR/t1"; : > "$BENCH_DIR/t2"
for _ in $(seq "$ROUNDS"); do
    curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$P1/metrics" >> "$BENCH_DIR/t1"
    curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$P2/metrics" >> "$BENCH_DIR/t2"
done
p95() { sort -g | awk '{a[NR]=$1} END {i=int(NR*0.95); if (i<1) i=1; print a[i]}'; }
m1=$(median < "$BENCH_DIR/t1"); m2=$(median < "$BENCH_DIR/t2")
q1=$(p95 < "$BENCH_DIR/t1"); q2=$(p95 < "$BENCH_DIR/t2")
own=$(curl -s "127.0.0.1:$P1/metrics" | awk '/^pg_exporter_last_scrape_duration_seconds/ {print $2}')
samples=$(grep -c '^trading_' "$BENCH_DIR/scrape.txt" || true)
errors=$(grep -c 'err=' "$BENCH_DIR/exporter-trading.log" || true)

echo "== exporter scrape: $ENDPOINTS endpoints, $POSITIONS positions, $POSITIONS orders, $ROUNDS interleaved scrapes, $(nproc) cores"
echo "   trading samples per scrape: $samples; exporter query errors: $errors"
awk -v m1="$m1" -v m2="$m2" -v q1="$q1" -v q2="$q2" -v own="$own" 'BEGIN {
    printf "   with queries.yaml : median %6.1f ms  p95 %6.1f ms\n", m1 * 1000, q1 * 1000
    printf "   baseline (none)   : median %6.1f ms  p95 %6.1f ms\n", m2 * 1000, q2 * 1000
    printf "   trading queries   : %6.1f ms (median difference); ratio %.2f\n", (m1 - m2) * 1000, (m2 > 0 ? m1 / m2 : 0)
    printf "   exporter-reported pg_exporter_last_scrape_duration_seconds: %.1f ms\n", own * 1000
    printf "   target < 50 ms: %s\n", (m1 < 0.050 ? "met" : "NOT met")
}'

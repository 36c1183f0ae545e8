#!/usr/bin/env bash
# Cost of one recorded observation: trading.record_api_request() against an
# empty C function with the same signature (metrics_noop, bound here as
# bench_noop), each called N times (default 1,000,000) in one statement,
# interleaved over ROUNDS rounds in the same session.  Prints per round the
# time of both, the ratio record/noop and the extra nanoseconds per call
# ((record - noop) / N) — the cost of validating the arguments, finding the
# label's slot (backend-local cache) and three atomic adds.  Target: the
# extra cost under 200 ns.  Also with 100 endpoints in rotation, and with two
# sessions recording the same endpoint at once (shared cache lines).
# Run as root after scripts/setup.sh (or as postgres).
# Results: docs/MONITORING.md, "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N=${N:-1000000}
ROUNDS=${ROUNDS:-5}
BENCH_PORT=${BENCH_PORT:-55472}

bench_cluster_start metrics_observe "trading.broker_worker = off"
bench_psql <<'SQL'
CREATE EXTENSION trading;
CREATE FUNCTION bench_noop(endpoint text, duration_seconds float8, status int DEFAULT 200)
    RETURNS void LANGUAGE c VOLATILE AS 'trading', 'metrics_noop';
CREATE FUNCTION bench_time(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE q;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
SQL

run() {   # run LABEL EXPR_OF_i: prints the rounds and the medians
    local label=$1 args=$2
    bench_psql -At -F ' ' <<SQL
SELECT trading.record_api_request('warm', 0.01);
CREATE TEMP TABLE r (round int, noop float8, rec float8);
DO \$\$
BEGIN
    FOR k IN 1..$ROUNDS LOOP
        INSERT INTO r VALUES (k,
            bench_time(\$q\$SELECT count(*) FROM (SELECT bench_noop($args) FROM generate_series(1, $N) i) s\$q\$),
            bench_time(\$q\$SELECT count(*) FROM (SELECT trading.record_api_request($args) FROM generate_series(1, $N) i) s\$q\$));
    END LOOP;
END \$\$;
SELECT format('%s round %s: noop %s ms  record %s ms  ratio %s  extra %s ns/call',
              rpad('$label', 14), round, round((noop * 1000)::numeric, 1), round((rec * 1000)::numeric, 1),
              round((rec / noop)::numeric, 2), round(((rec - noop) * 1e9 / $N)::numeric, 1))
FROM r ORDER BY round;
SELECT format('%s MEDIAN : noop %s ms  record %s ms  ratio %s  extra %s ns/call',
              rpad('$label', 14),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY noop) * 1000)::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY rec) * 1000)::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY rec / noop))::numeric, 2),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY (rec - noop) * 1e9 / $N))::numeric, 1))
FROM r;
SELECT format('%s BEST   : noop %s ms  record %s ms  ratio %s  extra %s ns/call (fastest of each)',
              rpad('$label', 14), round((min(noop) * 1000)::numeric, 1), round((min(rec) * 1000)::numeric, 1),
              round((min(rec) / min(noop))::numeric, 2), round(((min(rec) - min(noop)) * 1e9 / $N)::numeric, 1))
FROM r;
SQL
}

echo "== metrics: cost of one observation, $N calls per run, $ROUNDS interleaved rounds, $(nproc) cores"
run "one endpoint" "'kite.orders', 0.042, 200"
run "100 endpoints" "'ep' || (i % 100), 0.042, 200"

# Two sessions at once on the same endpoint (contended atomics).
echo "== two sessions at once, same endpoint"
for f in bench_noop trading.record_api_request; do
    start=$(date +%s.%N)
    for c in 1 2; do
        bench_psql -c "SELECT count(*) FROM (SELECT $f('kite.orders', 0.042, 200) FROM generate_series(1, $N)) s" >/dev/null &
    done
    wait
    end=$(date +%s.%N)
    awk -v f="$f" -v s="$start" -v e="$end" -v n="$N" \
        'BEGIN { printf "%-28s 2 x %d calls: %7.1f ms wall\n", f, n, (e - s) * 1000 }'
done
bench_psql -At -c "SELECT 'observations recorded: ' || sum(request_duration_seconds_count) FROM trading.metrics_api_request_duration"

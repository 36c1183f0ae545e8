#!/usr/bin/env bash
# Rate limiter speed: pgbench, interleaved in one run, on
#   select1  SELECT 1
#   fcall    SELECT pg_backend_pid()   (a trivial builtin function, for reference)
#   try      SELECT trading.rate_limit_try('bench')   (a limit that never refuses)
#   bucket   the usual PL/pgSQL token bucket on a table (SELECT ... FOR UPDATE,
#            UPDATE), with synchronous_commit = off to be fair
# Runs with one client per core, then with CLIENTS (default 8) clients.
# Prints tps (median of ROUNDS) and the ratios.  Targets: try >= 0.9x select1,
# try >= 5x bucket.  Run as root after scripts/setup.sh (or as postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-8}

bench_cluster_start ratelimit
bench_psql <<'SQL'
CREATE EXTENSION trading;
-- 100,000 per 100 ms (1,000,000 a second) is far above what 2 cores can
-- ask for: never refuses (checked at the end)
SELECT trading.rate_limit_set('bench', 100000, '100 milliseconds');
CREATE TABLE bucket (endpoint text PRIMARY KEY, tokens float8, capacity float8,
                     refill_per_second float8, updated timestamptz);
INSERT INTO bucket VALUES ('bench', 200000, 200000, 200000, clock_timestamp());
CREATE FUNCTION bucket_try(ep text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    b bucket%ROWTYPE;
    now timestamptz := clock_timestamp();
    t float8;
BEGIN
    SELECT * INTO b FROM bucket WHERE endpoint = ep FOR UPDATE;
    t := least(b.capacity, b.tokens + extract(epoch FROM now - b.updated) * b.refill_per_second);
    IF t >= 1 THEN
        UPDATE bucket SET tokens = t - 1, updated = now WHERE endpoint = ep;
        RETURN true;
    END IF;
    UPDATE bucket SET tokens = t, updated = now WHERE endpoint = ep;
    RETURN false;
END $$;
SQL

tmp=$(mktemp -d); chmod 755 "$tmp"
echo "SELECT 1;" > "$tmp/select1.sql"
echo "SELECT pg_backend_pid();" > "$tmp/fcall.sql"
echo "SELECT trading.rate_limit_try('bench');" > "$tmp/try.sql"
echo "SELECT bucket_try('bench');" > "$tmp/bucket.sql"
chmod 644 "$tmp"/*.sql

run_set() {
    local clients=$1
    declare -A runs
    for r in $(seq "$ROUNDS"); do
        for w in select1 fcall try bucket; do
            [ "$w" = bucket ] && export PGOPTIONS='-c synchronous_commit=off' || unset PGOPTIONS
            tps=$(bench_tps -n -M prepared -c "$clients" -j 2 -T "$SECONDS_PER_RUN" -f "$tmp/$w.sql")
            runs[$w]="${runs[$w]:-} $tps"
            printf 'clients %d round %d  %-8s %10.0f tps\n' "$clients" "$r" "$w" "$tps"
        done
    done
    unset PGOPTIONS
    local s f t b
    s=$(echo ${runs[select1]} | tr ' ' '\n' | median)
    f=$(echo ${runs[fcall]} | tr ' ' '\n' | median)
    t=$(echo ${runs[try]} | tr ' ' '\n' | median)
    b=$(echo ${runs[bucket]} | tr ' ' '\n' | median)
    summary+=$(printf '\nmedian tps over %d rounds (%d clients, %ss each, -M prepared):\n' "$ROUNDS" "$clients" "$SECONDS_PER_RUN")
    summary+=$(printf '\n  SELECT 1                    %10.0f' "$s")
    summary+=$(printf '\n  pg_backend_pid() (builtin)  %10.0f   (reference: any function call)' "$f")
    summary+=$(printf '\n  rate_limit_try              %10.0f' "$t")
    summary+=$(printf '\n  PL/pgSQL table bucket       %10.0f' "$b")
    summary+=$(printf '\n  try / SELECT 1              %10.2f   (target >= 0.90)' "$(echo "$t / $s" | bc -l)")
    summary+=$(printf '\n  try / table bucket          %10.2f   (target >= 5)' "$(echo "$t / $b" | bc -l)")
    summary+=$(printf '\n  try / pg_backend_pid()      %10.2f\n' "$(echo "$t / $f" | bc -l)")
}

# one client per core (per-call cost), then CLIENTS on the same cores
# (oversubscribed: scheduling and one shared endpoint dominate)
summary=""
run_set "$(nproc)"
run_set "$CLIENTS"
rm -rf "$tmp"

refused=$(bench_psql -At -c "SELECT refused_total FROM trading.rate_limit_status WHERE endpoint = 'bench'")
echo "$summary"
echo "  refusals on the bench endpoint: $refused (must be 0)"

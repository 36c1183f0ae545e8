#!/usr/bin/env bash
# Correlation tracking speed: pgbench, interleaved in one run, on
#   pair      BEGIN; correlation_begin(); correlation_end(); COMMIT
#             (4 statements; the events go through the shared-memory queue)
#   pair1     SELECT correlation_end(correlation_begin(...))   (1 statement)
#   select1   SELECT 1: the ceiling of one statement per transaction here
#   sync      what a user would write to survive a rollback without the
#             extension: INSERT a row (autocommit), then UPDATE it
#             (autocommit), default synchronous_commit = on
# Prints tps (median of ROUNDS) and the ratio pair / sync (target >= 10),
# plus what the writer stored and dropped.  Run as root after
# scripts/setup.sh (or as postgres).  Results: docs/CORRELATION.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-8}

bench_cluster_start correlation "trading.correlation_retention = 0"
bench_psql <<'SQL'
CREATE EXTENSION trading;
CREATE TABLE ops_sync (
    id          bigserial PRIMARY KEY,
    operation   text NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at    timestamptz,
    attributes  jsonb NOT NULL DEFAULT '{}');
SQL

tmp=$(mktemp -d); chmod 755 "$tmp"
cat > "$tmp/pair.sql" <<'SQL'
BEGIN;
SELECT trading.correlation_begin('bench', attributes => '{"symbol": "INFY"}');
SELECT trading.correlation_end();
COMMIT;
SQL
cat > "$tmp/pair1.sql" <<'SQL'
SELECT trading.correlation_end(trading.correlation_begin('bench1', attributes => '{"symbol": "INFY"}'));
SQL
echo "SELECT 1;" > "$tmp/select1.sql"
cat > "$tmp/sync.sql" <<'SQL'
INSERT INTO ops_sync (operation, attributes) VALUES ('bench', '{"symbol": "INFY"}') RETURNING id \gset
UPDATE ops_sync SET status = 'ok', ended_at = clock_timestamp() WHERE id = :id;
SQL
chmod 644 "$tmp"/*.sql

declare -A runs
for r in $(seq "$ROUNDS"); do
    for w in pair pair1 select1 sync; do
        tps=$(bench_tps -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" -f "$tmp/$w.sql")
        runs[$w]="${runs[$w]:-} $tps"
        printf 'round %d  %-6s %10.0f tps\n' "$r" "$w" "$tps"
    done
done
rm -rf "$tmp"

bench_psql -At -c "SELECT trading.correlation_flush('5 minutes')" >/dev/null
stats=$(bench_psql -At -F ' ' -c "SELECT enqueued_total, written_total, dropped_total, discarded_total FROM trading.correlation_stats")
rows=$(bench_psql -At -c "SELECT count(begin_seq) + count(end_seq) FROM trading.operations")
p=$(echo ${runs[pair]} | tr ' ' '\n' | median)
p1=$(echo ${runs[pair1]} | tr ' ' '\n' | median)
s=$(echo ${runs[sync]} | tr ' ' '\n' | median)
s1=$(echo ${runs[select1]} | tr ' ' '\n' | median)
echo
echo "median tps over $ROUNDS rounds ($CLIENTS clients, ${SECONDS_PER_RUN}s each, -M prepared, $(nproc) cores):"
printf '  begin/end pair, 4 statements   %10.0f\n' "$p"
printf '  begin/end pair, 1 statement    %10.0f\n' "$p1"
printf '  SELECT 1                       %10.0f\n' "$s1"
printf '  INSERT + UPDATE, synchronous   %10.0f\n' "$s"
printf '  pair / sync                    %10.2f   (target >= 10)\n' "$(echo "$p / $s" | bc -l)"
printf '  pair1 / sync                   %10.2f\n' "$(echo "$p1 / $s" | bc -l)"
set -- $stats
echo "  events enqueued $1, written $2, dropped $3 (queue full), discarded $4; events in the table: $rows"

#!/usr/bin/env bash
# Demo part of the broker worker (run by scripts/demo.sh as the postgres
# user, with PGHOST/PGPORT/DEMO_DIR/TRADING_SRC set): start the paper
# broker, set a session, add a watchlist, place a few orders through SQL
# (demo/orders.sql: a risk refusal, the kill switch, the order book), and show
# the tables filling, the worker's status and the metrics.
set -euo pipefail
PB=$(command -v paper-broker || echo "${TRADING_SRC:-.}/broker/paper-broker")
API=http://127.0.0.1:18765
ADMIN=http://127.0.0.1:18766
psql_() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

"$PB" --port 18765 --admin-port 18766 --tick-ms 250 --quiet \
    --log "$DEMO_DIR/paper-broker.log" >"$DEMO_DIR/paper-broker.out" 2>&1 &
pb=$!
trap 'kill $pb 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$ADMIN/admin/health" >/dev/null && break; sleep 0.1; done
echo "paper broker running (pid $pb) on $API"

psql_ -f "$DEMO_DIR/scripts/worker_session.sql"

echo
echo "== placing orders through SQL (the order sender sends them after COMMIT)"
psql_ -v ON_ERROR_STOP=0 -f "$DEMO_DIR/scripts/orders.sql"
sleep 2

psql_ -f "$DEMO_DIR/scripts/worker_show.sql"

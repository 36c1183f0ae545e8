#!/usr/bin/env bash
# Demo part of the ticker (run by scripts/demo.sh as the postgres user, with
# PGHOST/PGPORT/DEMO_DIR/TRADING_SRC set): a paper broker with its WebSocket
# ticker, a session, instruments and a watchlist; live ticks arrive in
# trading.quotes and trading.ticks; an order filled at the broker reaches
# trading.orders through the stream.  Leaves the watchlist and the session
# as it found them (the broker worker's demo part sets its own).
set -euo pipefail
PB=$(command -v paper-broker || echo "${TRADING_SRC:-.}/broker/paper-broker")
ADMIN=http://127.0.0.1:18776
psql_() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

"$PB" --port 18775 --admin-port 18776 --ws-port 18777 --ws-tick-ms 500 \
    --tick-ms 250 --quiet --log "$DEMO_DIR/paper-broker-ticker.log" \
    >"$DEMO_DIR/paper-broker-ticker.out" 2>&1 &
pb=$!
trap 'kill $pb 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$ADMIN/admin/health" >/dev/null && break; sleep 0.1; done
echo "paper broker with its WebSocket ticker running (pid $pb) on ws://127.0.0.1:18777"

psql_ -f "$DEMO_DIR/scripts/ticker_show.sql"

echo
echo "== the paper broker's view of the stream (GET /admin/ws)"
curl -sf "$ADMIN/admin/ws" | sed 's/,"/,\n   "/g' | grep -E 'connections_total|packets_total|heartbeats|order_updates' || true

#!/usr/bin/env bash
# Demo part of the market data worker (run by scripts/demo.sh as the
# postgres user, with PGHOST/PGPORT/DEMO_DIR/TRADING_SRC set): load the
# paper broker's instrument master, search it, and backfill a year of
# minute candles for one instrument while watching its progress.
set -euo pipefail
PB=$(command -v paper-broker || echo "${TRADING_SRC:-.}/broker/paper-broker")
ADMIN=http://127.0.0.1:18766
psql_() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

"$PB" --port 18765 --admin-port 18766 --tick-ms 0 --quiet \
    --log "$DEMO_DIR/paper-broker-market.log" >"$DEMO_DIR/paper-broker-market.out" 2>&1 &
pb=$!
trap 'kill $pb 2>/dev/null || true; wait $pb 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$ADMIN/admin/health" >/dev/null && break; sleep 0.1; done

psql_ -f "$DEMO_DIR/scripts/market.sql"

echo
echo '== the worker fetches it under kite.historical (3/s), one request per 60 days:'
for _ in $(seq 60); do
    out=$(psql_ -At -c "SELECT state, requests_done || '/' || requests_total, percent, rows,
                               coalesce(to_char(eta, 'HH24:MI:SS'), '-')
                          FROM trading.backfill_jobs ORDER BY id DESC LIMIT 1")
    echo "   state|requests|percent|rows|eta: $out"
    case $out in done*|failed*|cancelled*) break;; esac
    sleep 0.5
done
psql_ -c "SELECT to_char(ts AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI') AS ist, open, high, low, close, volume
            FROM trading.candles c JOIN trading.instruments i USING (instrument_token)
           WHERE i.exchange = 'NSE' AND i.tradingsymbol = 'INFY' AND c.\"interval\" = 'minute'
           ORDER BY ts DESC LIMIT 5"

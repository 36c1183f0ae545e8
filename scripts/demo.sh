#!/usr/bin/env bash
# README command 1: install everything (scripts/setup.sh), create a
# throwaway cluster with trading preloaded, and run the demo.  Run as root
# on Debian 12; the cluster runs as the postgres user under
# /var/tmp/trading-demo and listens on a Unix socket there only.
# KEEP=1 leaves the cluster running afterwards (it prints how to connect).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/setup.sh"

PGBIN=/usr/lib/postgresql/15/bin
demo=/var/tmp/trading-demo
port=${DEMO_PORT:-54329}
as_pg() { runuser -u postgres -- env PATH="$PGBIN:$PATH" "$@"; }

# a previous run's cluster, if any
if [ -f "$demo/data/postmaster.pid" ]; then
    as_pg pg_ctl -D "$demo/data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$demo"
# private and owned by postgres before anything is in it
. "$src/scripts/lib/private_dir.sh"
private_dir "$demo" postgres
cp -r "$src/demo" "$demo/scripts"
chown -R postgres:postgres "$demo/scripts"

echo "== creating a throwaway cluster in $demo"
as_pg initdb -D "$demo/data" -A trust -U postgres >/dev/null
as_pg tee -a "$demo/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$demo'
port = $port
shared_preload_libraries = 'trading'
trading.database = 'postgres'
CONF
for f in "$src"/demo/*.conf; do
    [ -f "$f" ] && as_pg tee -a "$demo/data/postgresql.conf" < "$f" >/dev/null
done
as_pg pg_ctl -D "$demo/data" -l "$demo/server.log" -w start >/dev/null
stop_cluster() {
    if [ "${KEEP:-0}" = 1 ]; then
        echo
        echo "The demo cluster is still running: psql -h $demo -p $port -U postgres"
        echo "Stop it with: runuser -u postgres -- $PGBIN/pg_ctl -D $demo/data stop"
    else
        as_pg pg_ctl -D "$demo/data" -m fast stop >/dev/null 2>&1 || true
    fi
}
trap stop_cluster EXIT

export DEMO_DIR=$demo DEMO_PORT=$port PGHOST=$demo PGPORT=$port PGUSER=postgres
as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$demo" -p "$port" -d postgres -c 'CREATE EXTENSION trading'
as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$demo" -p "$port" -d postgres -f "$demo/scripts/ratelimit.sql"

# later capabilities add their own parts of the demo as demo/*.sh
for part in "$demo"/scripts/*.sh; do
    [ -f "$part" ] || continue
    echo
    echo "== $(basename "$part")"
    as_pg env DEMO_DIR="$demo" DEMO_PORT="$port" PGHOST="$demo" PGPORT="$port" PGUSER=postgres \
        TRADING_SRC="$src" bash "$part"
done
echo
echo "== demo finished"

# bench/lib.sh: shared helpers for the benchmark scripts (sourced, not run).
# Creates a throwaway cluster owned by the postgres user with trading
# preloaded; the caller runs as root (after scripts/setup.sh) or as postgres.
#
#   source bench/lib.sh
#   bench_cluster_start NAME [extra postgresql.conf lines]
#   bench_psql -c "..."          # psql against it as postgres
#   bench_pgbench ARGS...        # pgbench against it as postgres
#   bench_cluster_stop
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BENCH_ROOT=${BENCH_ROOT:-/var/tmp/trading-bench}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env PATH="$PGBIN:$PATH" "$@"
    else
        env PATH="$PGBIN:$PATH" "$@"
    fi
}

bench_cluster_start() {
    local name=$1; shift
    BENCH_DIR="$BENCH_ROOT/$name"
    BENCH_PORT=${BENCH_PORT:-55432}
    mkdir -p "$BENCH_ROOT"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$BENCH_ROOT"
    as_postgres pg_ctl -D "$BENCH_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$BENCH_DIR"
    as_postgres mkdir -p "$BENCH_DIR"
    as_postgres initdb -D "$BENCH_DIR/data" -A trust -U postgres >/dev/null
    as_postgres tee -a "$BENCH_DIR/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$BENCH_DIR'
port = $BENCH_PORT
shared_preload_libraries = 'trading'
trading.database = 'postgres'
max_connections = 50
shared_buffers = 256MB
$*
CONF
    as_postgres pg_ctl -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w start >/dev/null
    trap bench_cluster_stop EXIT
}

bench_cluster_stop() {
    [ -n "${BENCH_DIR:-}" ] && as_postgres pg_ctl -D "$BENCH_DIR/data" -m fast stop >/dev/null 2>&1 || true
}

bench_psql() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_DIR" -p "$BENCH_PORT" -d postgres "$@"
}

bench_pgbench() {
    as_postgres pgbench -h "$BENCH_DIR" -p "$BENCH_PORT" "$@" postgres
}

# tps of one pgbench run (the "excluding connections" figure when present)
bench_tps() {
    bench_pgbench "$@" 2>/dev/null | awk '/^tps = / {v=$3} END {print v+0}'
}

median() {
    sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

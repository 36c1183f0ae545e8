#!/usr/bin/env bash
# scripts/ha.sh: the high-availability layout of docs/HA.md on one machine,
# on loopback: one etcd, three Patroni nodes (PostgreSQL 15 with trading
# preloaded), a PgBouncer in front of each node, HAProxy in front of the
# PgBouncers checking Patroni's REST API.  Built from the shipped files
# (deploy/patroni/patroni.yml.in, deploy/postgresql.common.conf,
# deploy/pgbouncer.ini, deploy/haproxy.cfg); only addresses, ports and paths
# differ.
#
#   scripts/ha.sh up           start what is not running; returns once there
#                              is a leader, two streaming replicas (one of
#                              them synchronous unless HA_SYNC=0) and both
#                              HAProxy ports answer.  A second up is harmless
#                              (and restarts a killed node, which rejoins).
#   scripts/ha.sh down [--purge]  stop exactly the processes up started (their
#                              pids are in $HA_DIR/pid); --purge also deletes
#                              $HA_DIR
#   scripts/ha.sh status       processes and `patronictl list`
#   scripts/ha.sh env          shell assignments to eval (ports, DSNs, nodes)
#   scripts/ha.sh kill-leader  SIGKILL the leader's Patroni, postmaster and
#                              every backend at once: node loss.
#                              Prints the node's name (node1, node2, node3)
#   scripts/ha.sh switchover [CANDIDATE]  planned switchover; waits for the
#                              old leader to stream from the new one and
#                              prints the new leader's name
#
# Settings (environment):
#   HA_PORT_BASE  first of 40 ports (default 24000, below the ephemeral
#                 range): etcd base, base+1; HAProxy read-write base+2,
#                 read-only base+3, stats base+4; node i (1-3): PostgreSQL
#                 base+10i, PgBouncer base+10i+1, Patroni REST base+10i+2
#   HA_DIR        state directory (default /var/tmp/trading-ha-$HA_PORT_BASE)
#   HA_SYNC       1 (default): synchronous_mode on; 0: off (applied by up)
#   HA_BROKER_URL trading.broker_url of every node (default a dead loopback
#                 port: the layout never reaches a real broker)
#   PG_CONFIG     the PostgreSQL installation (default Debian's 15)
#
# Runs as the postgres user; started as root, it re-runs itself as postgres.
set -euo pipefail
umask 077

here=$(cd "$(dirname "$0")/.." && pwd)
base=${HA_PORT_BASE:-24000}
dir=${HA_DIR:-/var/tmp/trading-ha-$base}
sync=${HA_SYNC:-1}
broker_url=${HA_BROKER_URL:-http://127.0.0.1:9}
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

if [ "$(id -u)" = 0 ]; then
    if [ ! -d "$dir" ]; then
        install -d -o postgres -g postgres -m 700 "$dir"
    fi
    exec runuser -u postgres -- env HA_PORT_BASE="$base" HA_DIR="$dir" HA_SYNC="$sync" \
        HA_BROKER_URL="$broker_url" PG_CONFIG="$pg_config" bash "$0" "$@"
fi
if [ "$(id -un)" != postgres ]; then
    echo "ha.sh: run as root or as postgres" >&2
    exit 2
fi
case "$base" in
    ''|*[!0-9]*) echo "ha.sh: HA_PORT_BASE must be a number" >&2; exit 2 ;;
esac
if [ "$base" -lt 1024 ] || [ "$base" -gt 65490 ]; then
    echo "ha.sh: HA_PORT_BASE must be between 1024 and 65490" >&2
    exit 2
fi

bindir=$("$pg_config" --bindir)
export PATH="$bindir:$PATH"
nodes="1 2 3"
scope=trading-ha-$base
etcd_port=$base
etcd_peer=$((base + 1))
rw_port=$((base + 2))
ro_port=$((base + 3))
stats_port=$((base + 4))
pg_port() { echo $((base + 10 * $1)); }
bouncer_port() { echo $((base + 10 * $1 + 1)); }
rest_port() { echo $((base + 10 * $1 + 2)); }
sockdir=$dir/run
piddir=$dir/pid
logdir=$dir/log
database=trading
desk_role=ha_desk

say() { echo "ha.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- processes: a pid file per process; alive only if the pid still runs
# the program we started (its command line names our state directory)
alive() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 1
    pid=$(head -n 1 "$pidfile" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
    echo "$pid"
}

# the postmaster of node $1, if running (its pid file names the data dir)
postmaster_pid() {
    local data=$dir/node$1/data pid
    [ -f "$data/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$data/postmaster.pid")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$data" || return 1
    echo "$pid"
}

# stop the process of a pid file: SIGTERM, wait up to $2 seconds
stop_pidfile() {
    local pidfile=$1 secs=${2:-30} pid i
    pid=$(alive "$pidfile") || { rm -f "$pidfile"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
        say "$(basename "$pidfile" .pid) did not stop in ${secs}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# ---- secrets: generated once, readable by postgres only
secrets() {
    umask 077
    if [ ! -f "$dir/secrets" ]; then
        {
            for k in SUPERUSER REPLICATION REWIND BOUNCER DESK; do
                echo "PW_$k=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
            done
        } > "$dir/secrets.new"
        mv "$dir/secrets.new" "$dir/secrets"
    fi
    # shellcheck disable=SC1091
    . "$dir/secrets"
    printf '127.0.0.1:*:%s:%s:%s\n' "$database" "$desk_role" "$PW_DESK" > "$dir/pgpass"
    printf '"pgbouncer_auth" "%s"\n' "$PW_BOUNCER" > "$dir/userlist.txt"
}

# ---- configuration files, rendered from deploy/
render() {
    local i
    mkdir -p "$sockdir" "$piddir" "$logdir"
    chmod 700 "$dir"
    # the server key, made once and shared by the nodes (trading-getkey-file
    # creates it on first use)
    [ -f "$dir/server.key" ] || "$bindir/trading-getkey-file" "$dir/server.key" > /dev/null
    sed -e "s|^trading\.key_command = .*|trading.key_command = '$bindir/trading-getkey-file $dir/server.key'|" \
        -e "s|^trading\.primary_hint = .*|trading.primary_hint = 'the read-write frontend at 127.0.0.1:$rw_port'|" \
        -e "s|^trading\.database = .*|trading.database = '$database'|" \
        -e "/^listen_addresses = /d" -e "/^port = /d" \
        "$here/deploy/postgresql.common.conf" > "$dir/postgresql.trading.conf"
    cat >> "$dir/postgresql.trading.conf" <<EOF

# ---- scripts/ha.sh: the loopback layout
trading.broker_url = '$broker_url'
logging_collector = on
log_directory = '$logdir'
log_line_prefix = '%m [%p] %q%a '
EOF
    for i in $nodes; do
        mkdir -p "$dir/node$i"
        # each node logs to a file of its own
        sed -e "s|^log_directory = .*|log_directory = '$logdir'\nlog_filename = 'node$i.postgresql.log'|" \
            "$dir/postgresql.trading.conf" > "$dir/node$i/postgresql.trading.conf"
        sed -e "s|@SCOPE@|$scope|g" -e "s|@NAME@|node$i|g" -e "s|@ADDR@|127.0.0.1|g" \
            -e "s|@REST_PORT@|$(rest_port "$i")|g" -e "s|@PG_PORT@|$(pg_port "$i")|g" \
            -e "s|@ETCD_HOSTS@|127.0.0.1:$etcd_port|g" \
            -e "s|@SYNC@|$([ "$sync" = 0 ] && echo false || echo true)|g" \
            -e "s|@POST_BOOTSTRAP@|$here/deploy/patroni/post_bootstrap.sh|g" \
            -e "s|@DATA_DIR@|$dir/node$i/data|g" -e "s|@BIN_DIR@|$bindir|g" \
            -e "s|@PATRONI_PGPASS@|$dir/node$i/patroni.pgpass|g" \
            -e "s|@CUSTOM_CONF@|$dir/node$i/postgresql.trading.conf|g" \
            -e "s|@SUPERUSER_PASSWORD@|$PW_SUPERUSER|g" \
            -e "s|@REPLICATION_PASSWORD@|$PW_REPLICATION|g" \
            -e "s|@REWIND_PASSWORD@|$PW_REWIND|g" \
            -e "s|@SOCKET_DIR@|$sockdir|g" -e "s|@NETWORK@|127.0.0.1/32|g" -e "s|@WATCHDOG@|off|g" \
            -e "s|@WARM_CALLBACK@|$here/deploy/patroni/pgbouncer_warm.sh 127.0.0.1 $(bouncer_port "$i") $database $desk_role $dir/pgpass|g" \
            "$here/deploy/patroni/patroni.yml.in" > "$dir/node$i/patroni.yml"
        grep -q '@[A-Z_]*@' "$dir/node$i/patroni.yml" && die "unreplaced placeholder in node$i/patroni.yml"
        sed -e "s|^\* = host=.*|* = host=127.0.0.1 port=$(pg_port "$i")|" \
            -e "s|^listen_addr = .*|listen_addr = 127.0.0.1|" \
            -e "s|^listen_port = .*|listen_port = $(bouncer_port "$i")|" \
            -e "s|^unix_socket_dir = .*|unix_socket_dir = $sockdir|" \
            -e "s|^logfile = .*|logfile = $logdir/node$i.pgbouncer.log|" \
            -e "s|^pidfile = .*|pidfile = $piddir/pgbouncer$i.pid|" \
            -e "s|^auth_file = .*|auth_file = $dir/userlist.txt|" \
            "$here/deploy/pgbouncer.ini" > "$dir/node$i/pgbouncer.ini"
    done
}

# ---- queries
# psql as the superuser over node $1's Unix socket
su_psql() {
    local i=$1; shift
    psql -X -A -t -q -h "$sockdir" -p "$(pg_port "$i")" -U postgres "$@"
}

# HTTP status of Patroni's REST API of node $1 for path $2
rest_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(rest_port "$1")$2" 2>/dev/null || true
}

# the node number of the leader, or nothing
leader() {
    local i
    for i in $nodes; do
        if [ "$(rest_code "$i" /primary)" = 200 ]; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

# ---- up
start_etcd() {
    alive "$piddir/etcd.pid" > /dev/null && return 0
    setsid etcd --name ha --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "ha=http://127.0.0.1:$etcd_peer" \
        --initial-cluster-token "$scope" --initial-cluster-state new \
        >> "$logdir/etcd.log" 2>&1 < /dev/null &
    echo $! > "$piddir/etcd.pid"
    local t
    for t in $(seq 1 100); do
        ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$etcd_port" --command-timeout=1s \
            endpoint health > /dev/null 2>&1 && return 0
        alive "$piddir/etcd.pid" > /dev/null || break
        sleep 0.2
    done
    tail -n 20 "$logdir/etcd.log" >&2
    die "etcd did not start"
}

start_patroni() {
    local i=$1
    alive "$piddir/patroni$i.pid" > /dev/null && return 0
    setsid patroni "$dir/node$i/patroni.yml" >> "$logdir/node$i.patroni.log" 2>&1 < /dev/null &
    echo $! > "$piddir/patroni$i.pid"
}

start_bouncer() {
    local i=$1
    alive "$piddir/pgbouncer$i.pid" > /dev/null && return 0
    pgbouncer -d "$dir/node$i/pgbouncer.ini" >> "$logdir/node$i.pgbouncer.out" 2>&1 < /dev/null ||
        die "PgBouncer of node$i did not start ($logdir/node$i.pgbouncer.log)"
}

start_haproxy() {
    alive "$piddir/haproxy.pid" > /dev/null && return 0
    # deploy/haproxy.cfg unchanged; the copy's path tells our HAProxy apart
    cp "$here/deploy/haproxy.cfg" "$dir/haproxy.cfg"
    env TRADING_NODE1="127.0.0.1:$(bouncer_port 1)" TRADING_NODE1_REST_PORT="$(rest_port 1)" \
        TRADING_NODE2="127.0.0.1:$(bouncer_port 2)" TRADING_NODE2_REST_PORT="$(rest_port 2)" \
        TRADING_NODE3="127.0.0.1:$(bouncer_port 3)" TRADING_NODE3_REST_PORT="$(rest_port 3)" \
        TRADING_RW_BIND="127.0.0.1:$rw_port" TRADING_RO_BIND="127.0.0.1:$ro_port" \
        TRADING_STATS_BIND="127.0.0.1:$stats_port" TRADING_ADMIN_SOCKET="$sockdir/haproxy.sock" \
        setsid haproxy -db -f "$dir/haproxy.cfg" \
        >> "$logdir/haproxy.log" 2>&1 < /dev/null &
    echo $! > "$piddir/haproxy.pid"
}

# wait until $1 (a shell command) succeeds, at most $2 seconds
wait_until() {
    local what=$1 secs=$2 t
    for ((t = 0; t < secs * 5; t++)); do
        eval "$what" && return 0
        sleep 0.2
    done
    return 1
}

# the leader has made the trading database and the extension
bootstrapped() {
    local l
    l=$(leader) || return 1
    [ "$(su_psql "$l" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$database'" 2>/dev/null)" = 1 ] &&
        [ "$(su_psql "$l" -d "$database" -c "SELECT count(*) FROM pg_extension WHERE extname = 'trading'" 2>/dev/null)" = 1 ]
}

# a password (stdin) as a SCRAM-SHA-256 secret, so that no password is in
# a statement's text or a command line
scram_secret() {
    /usr/bin/python3 -c '
import base64, hashlib, hmac, os, sys
pw, salt, it = sys.stdin.read().encode(), os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", pw, salt, it)
ck = hmac.new(salted, b"Client Key", "sha256").digest()
sk = hmac.new(salted, b"Server Key", "sha256").digest()
b64 = lambda x: base64.b64encode(x).decode()
print("SCRAM-SHA-256$%d:%s$%s:%s" % (it, b64(salt), b64(hashlib.sha256(ck).digest()), b64(sk)))'
}

# the login role of HA_DSN_RW/RO and PgBouncer's password, on the leader
roles() {
    local l desk_secret bouncer_secret
    l=$(leader) || return 1
    desk_secret=$(printf %s "$PW_DESK" | scram_secret)
    bouncer_secret=$(printf %s "$PW_BOUNCER" | scram_secret)
    su_psql "$l" -d "$database" -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN', '$desk_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$desk_role') \gexec
ALTER ROLE $desk_role PASSWORD '$desk_secret';
GRANT trading_trader TO $desk_role;
GRANT CREATE ON SCHEMA public TO $desk_role;
ALTER ROLE pgbouncer_auth PASSWORD '$bouncer_secret';
SQL
}

# synchronous_mode in etcd as HA_SYNC asks (bootstrap.dcs applies only to
# the first start)
apply_sync() {
    local l want have
    l=$(leader) || return 1
    want=$([ "$sync" = 0 ] && echo false || echo true)
    have=$(curl -s -m 5 "http://127.0.0.1:$(rest_port "$l")/config" | jq -r '.synchronous_mode // false')
    [ "$have" = "$want" ] && return 0
    curl -s -m 5 -X PATCH -d "{\"synchronous_mode\": $want}" \
        "http://127.0.0.1:$(rest_port "$l")/config" > /dev/null
}

# a leader, two streaming replicas (one synchronous unless HA_SYNC=0), each
# replica running as a replica for Patroni, and both HAProxy ports working
ready() {
    local l i want_sync n
    l=$(leader) || return 1
    want_sync=$([ "$sync" = 0 ] && echo 0 || echo 1)
    n=$(su_psql "$l" -d postgres -c "SELECT count(*) FILTER (WHERE state = 'streaming') || ' ' ||
        count(*) FILTER (WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))
        FROM pg_stat_replication" 2>/dev/null) || return 1
    [ "${n% *}" -ge 2 ] || return 1
    [ "${n#* }" -ge "$want_sync" ] || return 1
    for i in $nodes; do
        [ "$i" = "$l" ] && continue
        [ "$(rest_code "$i" /replica)" = 200 ] || return 1
    done
    # every node's PgBouncer lets a client in (see pgbouncer_warm.sh)
    for i in $nodes; do
        [ "$(PGPASSFILE=$dir/pgpass PGCONNECT_TIMEOUT=3 psql -X -A -t -w -h 127.0.0.1 -p "$(bouncer_port "$i")" \
            -U "$desk_role" -d "$database" -c 'SELECT 1' 2>/dev/null)" = 1 ] || return 1
    done
    # HAProxy (its stats page as CSV: proxy,server,...,status is field 18)
    # has the leader UP for writes and both replicas UP for reads
    n=$(curl -s -m 2 "http://127.0.0.1:$stats_port/;csv" | awk -F, -v l="node${l}_primary" '
        $1 == "trading_rw" && $2 == l && $18 == "UP" { rw++ }
        $1 == "trading_ro" && $2 ~ /_replica$/ && $18 == "UP" { ro++ }
        END { print rw + 0, ro + 0 }')
    [ "$n" = "1 2" ] || return 1
    [ "$(PGPASSFILE=$dir/pgpass PGCONNECT_TIMEOUT=3 psql -X -A -t -w -h 127.0.0.1 -p "$rw_port" \
        -U "$desk_role" -d "$database" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] || return 1
    [ "$(PGPASSFILE=$dir/pgpass PGCONNECT_TIMEOUT=3 psql -X -A -t -w -h 127.0.0.1 -p "$ro_port" \
        -U "$desk_role" -d "$database" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ] || return 1
}

logs_tail() {
    local f
    for f in "$logdir"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
}

cmd_up() {
    local i
    mkdir -p "$dir"
    secrets
    render
    start_etcd
    for i in $nodes; do start_patroni "$i"; done
    wait_until bootstrapped 240 || { logs_tail; die "no leader with the trading extension after 240 s"; }
    roles > /dev/null || die "could not create the roles on the leader"
    apply_sync || die "could not set synchronous_mode"
    for i in $nodes; do start_bouncer "$i"; done
    start_haproxy
    wait_until ready 300 || { logs_tail; cmd_status >&2; die "the layout is not ready after 300 s"; }
    say "up: leader node$(leader), two streaming replicas, read-write 127.0.0.1:$rw_port, read-only 127.0.0.1:$ro_port"
}

cmd_down() {
    local i pm
    stop_pidfile "$piddir/haproxy.pid" 10
    for i in $nodes; do stop_pidfile "$piddir/pgbouncer$i.pid" 10; done
    # the replicas first, so that they do not take over from a stopping leader
    local l
    l=$(leader || true)
    for i in $nodes; do [ "$i" = "$l" ] || stop_pidfile "$piddir/patroni$i.pid" 60 & done
    wait
    [ -n "$l" ] && stop_pidfile "$piddir/patroni$l.pid" 60
    # a postmaster whose Patroni was killed (kill-leader without up)
    for i in $nodes; do
        if pm=$(postmaster_pid "$i"); then
            pg_ctl -D "$dir/node$i/data" -m fast -w stop > /dev/null 2>&1 || kill -QUIT "$pm" 2>/dev/null || true
        fi
    done
    stop_pidfile "$piddir/etcd.pid" 20
    if [ "${1:-}" = --purge ]; then
        rm -rf "$dir"
        say "down: stopped and removed $dir"
    else
        say "down: stopped (state kept in $dir)"
    fi
}

cmd_status() {
    local i pid
    for p in etcd haproxy; do
        if pid=$(alive "$piddir/$p.pid"); then echo "$p: running (pid $pid)"; else echo "$p: stopped"; fi
    done
    for i in $nodes; do
        local s="node$i:"
        if pid=$(alive "$piddir/patroni$i.pid"); then s="$s patroni $pid"; else s="$s patroni stopped"; fi
        if pid=$(postmaster_pid "$i"); then s="$s, postgres $pid"; else s="$s, postgres stopped"; fi
        if pid=$(alive "$piddir/pgbouncer$i.pid"); then s="$s, pgbouncer $pid"; else s="$s, pgbouncer stopped"; fi
        echo "$s"
    done
    if alive "$piddir/etcd.pid" > /dev/null && [ -f "$dir/node1/patroni.yml" ]; then
        patronictl -c "$dir/node1/patroni.yml" list 2>/dev/null || true
    fi
}

cmd_env() {
    local i
    [ -f "$dir/pgpass" ] || die "no layout in $dir (run up first)"
    local dsn="dbname=$database user=$desk_role passfile=$dir/pgpass gssencmode=disable"
    echo "HA_DIR=$dir"
    echo "HA_SOCKET_DIR=$sockdir"
    echo "HA_ETCD_PORT=$etcd_port"
    echo "HA_RW_PORT=$rw_port"
    echo "HA_RO_PORT=$ro_port"
    echo "HA_STATS_PORT=$stats_port"
    echo "HA_ADMIN_SOCKET=$sockdir/haproxy.sock"
    echo "HA_DSN_RW='host=127.0.0.1 port=$rw_port $dsn'"
    echo "HA_DSN_RO='host=127.0.0.1 port=$ro_port $dsn'"
    for i in $nodes; do
        echo "HA_NODE${i}_PORT=$(pg_port "$i")"
        echo "HA_NODE${i}_DATA=$dir/node$i/data"
        echo "HA_NODE${i}_REST=$(rest_port "$i")"
        echo "HA_NODE${i}_BOUNCER=$(bouncer_port "$i")"
    done
}

# the pids of the children of process $1, from /proc (field 4 of stat is
# the parent; the command name before it may contain spaces)
children_of() {
    local parent=$1 f st fields
    for f in /proc/[0-9]*/stat; do
        st=$(cat "$f" 2>/dev/null) || continue
        read -r -a fields <<< "${st##*) }"
        if [ "${fields[1]:-}" = "$parent" ]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

cmd_kill_leader() {
    local l ppid pm children
    l=$(leader) || die "no leader"
    ppid=$(alive "$piddir/patroni$l.pid") || die "node$l's Patroni was not started by this script"
    pm=$(postmaster_pid "$l") || die "node$l has no postmaster"
    # every backend is a session of its own (PostgreSQL calls setsid() in
    # each child), so the node's processes are the postmaster and its
    # children: stop the postmaster (it forks no more), list its children,
    # and kill them all with Patroni in one kill(1)
    kill -STOP "$pm"
    children=$(children_of "$pm")
    # shellcheck disable=SC2086
    kill -KILL -- "$ppid" "$pm" $children
    echo "node$l"
}

cmd_switchover() {
    local l new code t
    l=$(leader) || die "no leader"
    secrets
    code=$(curl -s -m 30 -o "$dir/switchover.out" -w '%{http_code}' -X POST \
        -d "{\"leader\": \"node$l\"${1:+, \"candidate\": \"$1\"}}" \
        "http://127.0.0.1:$(rest_port "$l")/switchover")
    [ "$code" = 200 ] || die "switchover refused ($code): $(cat "$dir/switchover.out")"
    for t in $(seq 1 300); do
        new=$(leader || true)
        [ -n "$new" ] && [ "$new" != "$l" ] && break
        sleep 0.2
    done
    [ -n "$new" ] && [ "$new" != "$l" ] || die "no new leader after the switchover"
    wait_until ready 300 || { logs_tail; die "the old leader did not rejoin after the switchover"; }
    echo "node$new"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kill-leader) cmd_kill_leader ;;
    switchover) cmd_switchover "${2:-}" ;;
    *) echo "usage: scripts/ha.sh up|down [--purge]|status|env|kill-leader|switchover [node]" >&2; exit 2 ;;
esac

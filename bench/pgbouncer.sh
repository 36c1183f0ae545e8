#!/usr/bin/env bash
# Connection pooling speed: pgbench with a new connection per transaction
# (-C), the extension's functions in the script, interleaved in one run:
#
#   direct     pgbench -> PostgreSQL (a backend forked per connection)
#   pgbouncer  pgbench -> PgBouncer (deploy/pgbouncer.ini, transaction
#              pooling) -> a pooled server connection
#
# three ways each:
#   scram  TCP, SCRAM passwords: the production layout (auth_query for
#          PgBouncer, scram-sha-256 on the server)
#   trust  TCP, no password: what connections cost without password
#          hashing (PgBouncer finds the user in its userlist)
#   unix   as trust, over Unix-domain sockets: an application on the
#          PgBouncer host, and without the loopback TCP stack's cost
# Prints tps per round, the medians and the ratios pgbouncer/direct.
# Target: >= 5x through PgBouncer.
#
# Clients use gssencmode=disable: no Kerberos anywhere here, and libpq's
# default ("prefer") reads the Kerberos configuration on every connection,
# a client-side cost that is not the server's.  sslmode stays libpq's default.
#
# pgbench runs on the same 2 cores as the server, and a SCRAM client pays
# its own key derivation (PBKDF2, 4096 iterations) on every connection,
# pooled or not; so the script also measures what each transaction costs
# the database node itself: CPU time of the postmaster and all its
# children (reaped backends included) plus PgBouncer, per transaction.  In
# production the clients are elsewhere and that is the node's capacity.
# The clients' own CPU per transaction (pgbench, reaped) is printed too.
# Run as root after scripts/setup.sh (or as postgres).  Results:
# docs/LOAD_BALANCER_SETUP.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
# below the ephemeral port range, so no client socket can be holding them
BOUNCER_SCRAM_PORT=${BOUNCER_SCRAM_PORT:-26432}
BOUNCER_TRUST_PORT=${BOUNCER_TRUST_PORT:-26433}
PASSWORD=bench-$RANDOM-$RANDOM

bench_cluster_start pgbouncer "listen_addresses = '127.0.0.1'
max_connections = 60
idle_in_transaction_session_timeout = '60s'
password_encryption = 'scram-sha-256'"
# SCRAM for the bench_scram role and PgBouncer's lookup role; trust stays
# for the others (initdb -A trust)
as_postgres sh -c "{ printf 'host all bench_scram,pgbouncer_auth 127.0.0.1/32 scram-sha-256\n'; cat '$BENCH_DIR/data/pg_hba.conf'; } > '$BENCH_DIR/hba' && mv '$BENCH_DIR/hba' '$BENCH_DIR/data/pg_hba.conf'"
bench_psql -c "SELECT pg_reload_conf()" >/dev/null
bench_psql <<SQL
CREATE EXTENSION trading;
SELECT trading.rate_limit_set('bench', 100000, '1 second');
CREATE ROLE bench_scram LOGIN PASSWORD '$PASSWORD' IN ROLE trading_analyst;
CREATE ROLE bench_trust LOGIN IN ROLE trading_analyst;
SQL
bench_psql -f deploy/pgbouncer_auth.sql >/dev/null
bench_psql -c "ALTER ROLE pgbouncer_auth PASSWORD '$PASSWORD'"

# two PgBouncers from deploy/pgbouncer.ini: as shipped (SCRAM, auth_query)
# and with auth_type = trust, where bench_trust is in the userlist (a trust
# user found by auth_query would cost a query per login for nothing)
bouncer_pids=()
stop_all() {
    for p in "${bouncer_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bench_cluster_stop
}
trap stop_all EXIT
start_bouncer() {
    local name=$1 port=$2 auth=$3 users=$4
    as_postgres sh -c "printf '\"pgbouncer_auth\" \"%s\"\n' '$PASSWORD' > '$BENCH_DIR/$name.users'; printf '$users' >> '$BENCH_DIR/$name.users'; chmod 600 '$BENCH_DIR/$name.users'"
    sed -e "s|^\* = host=.*|* = host=127.0.0.1 port=$BENCH_PORT|" \
        -e "s|^listen_addr = .*|listen_addr = 127.0.0.1|" \
        -e "s|^listen_port = .*|listen_port = $port|" \
        -e "s|^unix_socket_dir = .*|unix_socket_dir = $BENCH_DIR|" \
        -e "s|^logfile = .*|logfile = $BENCH_DIR/$name.log|" \
        -e "s|^pidfile = .*|pidfile = $BENCH_DIR/$name.pid|" \
        -e "s|^auth_file = .*|auth_file = $BENCH_DIR/$name.users|" \
        -e "s|^auth_type = .*|auth_type = $auth|" \
        deploy/pgbouncer.ini | as_postgres tee "$BENCH_DIR/$name.ini" >/dev/null
    as_postgres /usr/sbin/pgbouncer -d "$BENCH_DIR/$name.ini"
    for _ in $(seq 50); do [ -s "$BENCH_DIR/$name.pid" ] && break; sleep 0.1; done
    bouncer_pids+=("$(cat "$BENCH_DIR/$name.pid")")
}
start_bouncer bouncer_scram "$BOUNCER_SCRAM_PORT" scram-sha-256 ''
start_bouncer bouncer_trust "$BOUNCER_TRUST_PORT" trust '"bench_trust" ""\n'

tmp=$(mktemp -d); chmod 755 "$tmp"
cat > "$tmp/functions.sql" <<'EOF'
SELECT trading.rate_limit_try('bench');
SELECT count(*) FROM trading.rate_limit_status;
BEGIN;
SELECT trading.correlation_begin('bench');
SELECT trading.correlation_end();
COMMIT;
SELECT trading.record_api_request('bench', 0.001, 200);
EOF
as_postgres sh -c "printf '127.0.0.1:*:*:bench_scram:%s\n' '$PASSWORD' > '$BENCH_DIR/pgpass'; chmod 600 '$BENCH_DIR/pgpass'"
chmod 644 "$tmp"/*.sql

# tps including connection time (-C makes connections the cost); a run
# that fails (e.g. someone reinstalls trading.so meanwhile on a shared
# machine) is retried once and otherwise counts as 0
run1() {
    local host=$1 port=$2 user=$3
    as_postgres env PGPASSFILE="$BENCH_DIR/pgpass" PGGSSENCMODE=disable \
        pgbench -n -C -M simple -c "$CLIENTS" -j "$JOBS" \
        -T "$SECONDS_PER_RUN" -f "$tmp/functions.sql" -h "$host" -p "$port" -U "$user" postgres \
        > "$tmp/out" 2>&1 || { echo 0; return; }
    # this runs in a subshell ($(run1 ...)): its reaped children's CPU is
    # pgbench's (through runuser), i.e. what the clients cost
    awk '{print $16 + $17}' "/proc/$BASHPID/stat" > "$tmp/client_ticks"
    awk '/^tps = .*including/ {v=$3} /^tps = / && !v {v=$3} END {print v+0}' "$tmp/out"
}
run() {
    local tps
    tps=$(run1 "$@")
    [ "$tps" = 0 ] && { sleep 5; tps=$(run1 "$@"); }
    echo "$tps"
}

# CPU ticks (1/100 s) used so far by the cluster (postmaster, its live
# children, and the reaped ones through cutime/cstime) and the PgBouncers
node_ticks() {
    perl -e '
        my ($pm, @extra) = @ARGV; my $t = 0;
        opendir(my $d, "/proc") or die;
        for my $p (grep { /^\d+$/ } readdir $d) {
            open(my $f, "<", "/proc/$p/stat") or next;
            my $s = <$f>; next unless defined $s;
            $s =~ s/^.*\)\s//; my @f = split / /, $s;
            if ($p == $pm || $f[1] == $pm) { $t += $f[11] + $f[12] + $f[13] + $f[14] }
            elsif (grep { $_ == $p } @extra) { $t += $f[11] + $f[12] }
        }
        print $t' "$(head -n 1 "$BENCH_DIR/data/postmaster.pid")" "${bouncer_pids[@]}"
}

WORKLOADS="direct_scram pgbouncer_scram direct_trust pgbouncer_trust direct_unix pgbouncer_unix"
declare -A runs cpu ccpu
for r in $(seq "$ROUNDS"); do
    for w in $WORKLOADS; do
        t0=$(node_ticks)
        case $w in
            direct_scram) tps=$(run 127.0.0.1 "$BENCH_PORT" bench_scram) ;;
            pgbouncer_scram) tps=$(run 127.0.0.1 "$BOUNCER_SCRAM_PORT" bench_scram) ;;
            direct_trust) tps=$(run 127.0.0.1 "$BENCH_PORT" bench_trust) ;;
            pgbouncer_trust) tps=$(run 127.0.0.1 "$BOUNCER_TRUST_PORT" bench_trust) ;;
            direct_unix) tps=$(run "$BENCH_DIR" "$BENCH_PORT" bench_trust) ;;
            pgbouncer_unix) tps=$(run "$BENCH_DIR" "$BOUNCER_TRUST_PORT" bench_trust) ;;
        esac
        t1=$(node_ticks)
        # milliseconds of node CPU per transaction
        ms=$(awk -v t="$((t1 - t0))" -v tps="$tps" -v s="$SECONDS_PER_RUN" \
            'BEGIN { if (tps > 0) printf "%.3f", t * 10 / (tps * s); else print 0 }')
        cms=$(awk -v t="$(cat "$tmp/client_ticks")" -v tps="$tps" -v s="$SECONDS_PER_RUN" \
            'BEGIN { if (tps > 0) printf "%.3f", t * 10 / (tps * s); else print 0 }')
        runs[$w]="${runs[$w]:-} $tps"
        cpu[$w]="${cpu[$w]:-} $ms"
        ccpu[$w]="${ccpu[$w]:-} $cms"
        printf 'round %d  %-16s %10.0f tps  %7.3f ms node CPU/transaction  %7.3f ms client CPU/transaction\n' "$r" "$w" "$tps" "$ms" "$cms"
    done
done
rm -rf "$tmp"

ops=$(bench_psql -At -c "SELECT trading.correlation_flush(); SELECT count(*) FROM trading.operations WHERE operation = 'bench'" | tail -n 1)
echo
echo "median tps over $ROUNDS rounds of ${SECONDS_PER_RUN}s, $CLIENTS clients, pgbench -C (new connection per transaction):"
declare -A med medcpu medccpu
for w in $WORKLOADS; do
    med[$w]=$(echo "${runs[$w]}" | tr ' ' '\n' | grep -v '^$' | median)
    medcpu[$w]=$(echo "${cpu[$w]}" | tr ' ' '\n' | grep -v '^$' | median)
    medccpu[$w]=$(echo "${ccpu[$w]}" | tr ' ' '\n' | grep -v '^$' | median)
    printf '  %-16s %10.0f tps  %7.3f ms node CPU/transaction  %7.3f ms client CPU/transaction\n' "$w" "${med[$w]}" "${medcpu[$w]}" "${medccpu[$w]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "inf" }'; }
for k in scram trust unix; do
    echo "  pgbouncer / direct, $k: throughput $(ratio "${med[pgbouncer_$k]}" "${med[direct_$k]}")x (target >= 5x), node CPU per transaction $(ratio "${medcpu[direct_$k]}" "${medcpu[pgbouncer_$k]}")x"
done
echo "  operations recorded by correlation tracking: $ops"

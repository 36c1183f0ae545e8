#!/usr/bin/env bash
# The regression suite a second time, through PgBouncer in transaction
# pooling mode (deploy/pgbouncer.ini with its site lines replaced and
# min_pool_size = 0, below),
# then every family of the extension's functions with no session state at
# all between transactions.
#
# Run by scripts/test.sh as the postgres user from the tree copy's root,
# after `make regresscheck`.  It starts its own PostgreSQL (test/regress.conf
# plus the settings pg_regress gives its temporary instance and database)
# and its own PgBouncer on free loopback ports.
#
# Part 1: sql/*.sql with pg_regress against PgBouncer, compared with the
# same expected/*.out.  Each test file is one client session, run on fresh
# server connections (admin console RECONNECT): in transaction mode, what a
# session leaves on a server connection (its pg_temp functions, a SET) would
# otherwise reach whichever client gets that connection next: a property
# of transaction pooling for every client, spelled out in
# docs/LOAD_BALANCER_SETUP.md.  Within a file the client is alone, so its
# own session scaffolding (SET ROLE, pg_temp helpers) holds.
#
# Part 2: server_reset_query_always = 1 (DISCARD ALL after every
# transaction: nothing of a session survives its transaction, the strictest
# pooling), and each function family of the extension, one transaction at
# a time, gives the expected answers.
#
# Authentication is the shipped scram-sha-256 through PgBouncer with a
# userlist (the auth_query variant is exercised by test/suites/ha_patroni.sh): the
# superuser first; 00_setup creates the test roles, this script gives them
# passwords, writes their SCRAM secrets to the userlist and reloads.
#
# Exits non-zero when a test fails, after printing the diffs.
set -uo pipefail

src=$(pwd)
bindir=/usr/lib/postgresql/15/bin
command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ] && bindir=$(pg_config --bindir)
pg_regress=$(dirname "$(pg_config --pgxs 2>/dev/null)")/../test/regress/pg_regress
[ -x "$pg_regress" ] || pg_regress=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
pgbouncer=${PGBOUNCER:-/usr/sbin/pgbouncer}
export PATH="$bindir:$PATH"

work="$src/tmp_check_pgbouncer"
rm -rf "$work"
mkdir -p "$work/out"
data="$work/data"
log="$work/postgres.log"
password=regress-pgbouncer-$$-$RANDOM

free_port() {
    perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport'
}
pgport=$(free_port)
bport=$(free_port)
while [ "$bport" = "$pgport" ]; do bport=$(free_port); done

pg_up=0
bouncer_pid=
cleanup() {
    [ -n "$bouncer_pid" ] && kill "$bouncer_pid" 2>/dev/null
    [ "$pg_up" = 1 ] && pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1
}
trap cleanup EXIT

fail() {
    echo "pgbouncer suite: $*" >&2
    for f in "$log" "$work/pgbouncer.log"; do
        [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -n 40 "$f"; }
    done
    exit 1
}

# ---- PostgreSQL: the regression instance's settings, SCRAM over TCP
echo "$password" > "$work/pwfile"
initdb -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$work/pwfile" -E UTF8 --no-locale >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log"; fail "initdb failed"; }
{
    cat "$src/test/regress.conf"
    echo "# what pg_regress --temp-instance adds to its instance"
    echo "log_autovacuum_min_duration = 0"
    echo "log_checkpoints = on"
    echo "log_line_prefix = '%m %b[%p] %q%a '"
    echo "log_lock_waits = on"
    echo "log_temp_files = 128kB"
    echo "max_prepared_transactions = 2"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $pgport"
    echo "unix_socket_directories = '$work'"
} >> "$data/postgresql.conf"
pg_ctl -D "$data" -l "$log" -w start >/dev/null || fail "PostgreSQL did not start"
pg_up=1

# The database as pg_regress creates it; its PGOPTIONS intervalstyle cannot
# pass through PgBouncer (which ignores "options"), so the database has it.
psql -X -q -h "$work" -p "$pgport" -d postgres >/dev/null <<'EOF' || fail "could not create the database"
CREATE DATABASE contrib_regression TEMPLATE template0;
ALTER DATABASE contrib_regression SET lc_messages TO 'C';
ALTER DATABASE contrib_regression SET lc_monetary TO 'C';
ALTER DATABASE contrib_regression SET lc_numeric TO 'C';
ALTER DATABASE contrib_regression SET lc_time TO 'C';
ALTER DATABASE contrib_regression SET bytea_output TO 'hex';
ALTER DATABASE contrib_regression SET timezone_abbreviations TO 'Default';
ALTER DATABASE contrib_regression SET intervalstyle TO 'postgres_verbose';
EOF

# ---- PgBouncer: deploy/pgbouncer.ini, site lines replaced, and
# min_pool_size = 0: part 1 needs each file to stay on one server connection
# (see the top), and with the shipped min_pool_size = 2 PgBouncer opens a
# second one about a second after RECONNECT; a server that finishes its
# login goes to the head of the idle list (LIFO), so the file's next
# transaction would run there, without the pg_temp helpers it made (seen
# once in CI: crypto.sql, "schema pg_temp does not exist").
userlist="$work/userlist.txt"
write_userlist() {
    psql -X -At -h "$work" -p "$pgport" -d postgres \
        -c "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid
            WHERE rolcanlogin AND rolpassword IS NOT NULL ORDER BY 1" > "$userlist.new" &&
        mv "$userlist.new" "$userlist"
}
write_userlist || fail "could not write the userlist"
sed -e "s|^\* = host=.*|* = host=127.0.0.1 port=$pgport|" \
    -e "s|^listen_addr = .*|listen_addr = 127.0.0.1|" \
    -e "s|^listen_port = .*|listen_port = $bport|" \
    -e "s|^unix_socket_dir = .*|unix_socket_dir = $work|" \
    -e "s|^logfile = .*|logfile = $work/pgbouncer.log|" \
    -e "s|^pidfile = .*|pidfile = $work/pgbouncer.pid|" \
    -e "s|^auth_file = .*|auth_file = $userlist|" \
    -e "s|^admin_users = .*|admin_users = postgres|" \
    -e "s|^min_pool_size = .*|min_pool_size = 0|" \
    "$src/deploy/pgbouncer.ini" > "$work/pgbouncer.ini"
grep -q "^pool_mode = transaction$" "$work/pgbouncer.ini" || fail "deploy/pgbouncer.ini is not in transaction mode"
"$pgbouncer" "$work/pgbouncer.ini" >"$work/pgbouncer.out" 2>&1 &
bouncer_pid=$!

export PGPASSFILE="$work/pgpass"
echo "127.0.0.1:$bport:*:*:$password" > "$PGPASSFILE"
chmod 600 "$PGPASSFILE"
bouncer_ok() {
    psql -X -At -h 127.0.0.1 -p "$bport" -U postgres -d contrib_regression -c "SELECT 1" >/dev/null 2>&1
}
for _ in $(seq 1 50); do bouncer_ok && break; sleep 0.2; done
bouncer_ok || fail "PgBouncer does not answer"

admin() {
    psql -X -q -h 127.0.0.1 -p "$bport" -U postgres -d pgbouncer -c "$1" >/dev/null
}

# ---- part 1: the regression suite through PgBouncer
tests=$(cd "$src/sql" && ls *.sql | sed 's/\.sql$//' | sort)
last_setup=$(echo "$tests" | grep '^00_' | tail -n 1)

run_regress() {
    "$pg_regress" --use-existing --bindir="$bindir" --host=127.0.0.1 --port="$bport" \
        --user=postgres --dbname=contrib_regression --inputdir="$src" \
        --outputdir="$work/out" "$@"
}

status=0
ntests=0
: > "$work/all.diffs"
echo "part 1: sql/*.sql through PgBouncer (transaction pooling), one client session per file"
for t in $tests; do
    admin "RECONNECT contrib_regression" || fail "PgBouncer's admin console refused RECONNECT"
    rm -f "$work/out/regression.diffs"
    if run_regress "$t" > "$work/out/$t.log" 2>&1; then
        echo "  $t ... ok"
    else
        echo "  $t ... FAILED"
        status=1
        [ -f "$work/out/regression.diffs" ] && cat "$work/out/regression.diffs" >> "$work/all.diffs"
        grep -q "^test $t" "$work/out/$t.log" || cat "$work/out/$t.log" >> "$work/all.diffs"
    fi
    ntests=$((ntests + 1))
    if [ "$t" = "$last_setup" ]; then
        # the test roles get a password, PgBouncer their SCRAM secrets
        psql -X -q -h "$work" -p "$pgport" -d contrib_regression -v pw="$password" >/dev/null <<'EOF' || fail "could not set passwords"
SELECT format('ALTER ROLE %I PASSWORD %L', rolname, :'pw') FROM pg_roles
WHERE rolname LIKE 'regress\_%' AND rolcanlogin \gexec
EOF
        write_userlist || fail "could not write the userlist"
        admin "RELOAD" || fail "PgBouncer did not reload"
    fi
done

# ---- part 2: no session state at all between transactions
echo "part 2: each function family with DISCARD ALL after every transaction"
sed -i -e "s|^server_reset_query_always = .*|server_reset_query_always = 1|" "$work/pgbouncer.ini"
admin "RELOAD" || fail "PgBouncer did not reload"
admin "RECONNECT contrib_regression" || fail "PgBouncer's admin console refused RECONNECT"

cat > "$work/stateless.sql" <<'EOF'
\set VERBOSITY sqlstate
-- the harness: a SET does not survive its transaction
SET work_mem = '7MB';
SHOW work_mem;
-- rate limiter
SELECT trading.rate_limit_set('pooled.test', 2, '1 hour');
SELECT trading.rate_limit_try('pooled.test');
SELECT trading.rate_limit_try('pooled.test');
SELECT trading.rate_limit_try('pooled.test');
SELECT trading.rate_limit_acquire('pooled.test', 1, '10 ms') IS NULL;
SELECT endpoint, used, remaining FROM trading.rate_limit_status WHERE endpoint = 'pooled.test';
SELECT trading.rate_limit_drop('pooled.test');
-- correlation: the context lives within one transaction
BEGIN;
SELECT trading.correlation_begin('pooled.parent') IS NOT NULL AS began;
SELECT trading.correlation_begin('pooled.child') = trading.current_correlation_id() AS child_is_current;
SELECT trading.correlation_end() >= interval '0' AS child_ended;
SELECT trading.correlation_end() >= interval '0' AS parent_ended;
COMMIT;
SELECT trading.current_correlation_id() IS NULL AS nothing_open;
SELECT trading.correlation_begin('pooled.abandoned') IS NOT NULL AS began_alone;
SELECT trading.current_correlation_id() IS NULL AS closed_with_its_transaction;
SELECT trading.correlation_flush();
SELECT operation, status, auto_ended FROM trading.operations
WHERE operation LIKE 'pooled.%' ORDER BY operation;
SELECT count(*) FROM trading.correlation_stats;
-- crypto and archives
SELECT trading.decrypt_text(trading.encrypt_text('pooled secret')) AS server_key;
SELECT convert_from(trading.decrypt_with_passphrase(trading.encrypt_with_passphrase('pooled'::bytea, 'passphrase 1'), 'passphrase 1'), 'UTF8') AS passphrase;
SELECT trading.archive_create('pooled.archive', 'SELECT g AS n FROM generate_series(1, 3) g') > 0 AS archived;
SELECT trading.archive_verify('pooled.archive');
SELECT count(*) FROM trading.archive_rows('pooled.archive');
-- metrics
SELECT trading.record_trade('BUY', 'pooled.COMPLETE');
SELECT trading.record_api_request('pooled', 0.01, 200);
SELECT trading.record_exception('pooled');
SELECT count(*) > 0 AS has_metrics FROM trading.metrics;
-- worker, session and validation views
SELECT count(*) > 0 AS worker_rows FROM trading.worker_status;
SELECT count(*) FROM trading.broker_session_status;
SELECT count(*) > 10 AS checks FROM trading.validate_config();
EOF

cat > "$work/stateless.expected" <<'EOF'
 work_mem 
----------
 4MB
(1 row)

 rate_limit_set 
----------------
 
(1 row)

 rate_limit_try 
----------------
 t
(1 row)

 rate_limit_try 
----------------
 t
(1 row)

 rate_limit_try 
----------------
 f
(1 row)

ERROR:  TR001
  endpoint   | used | remaining 
-------------+------+-----------
 pooled.test |    2 |         0
(1 row)

 rate_limit_drop 
-----------------
               1
(1 row)

 began 
-------
 t
(1 row)

 child_is_current 
------------------
 t
(1 row)

 child_ended 
-------------
 t
(1 row)

 parent_ended 
--------------
 t
(1 row)

 nothing_open 
--------------
 t
(1 row)

 began_alone 
-------------
 t
(1 row)

 closed_with_its_transaction 
-----------------------------
 t
(1 row)

 correlation_flush 
-------------------
 
(1 row)

    operation     |  status   | auto_ended 
------------------+-----------+------------
 pooled.abandoned | abandoned | t
 pooled.child     | ok        | f
 pooled.parent    | ok        | f
(3 rows)

 count 
-------
     1
(1 row)

  server_key   
---------------
 pooled secret
(1 row)

 passphrase 
------------
 pooled
(1 row)

 archived 
----------
 t
(1 row)

 archive_verify 
----------------
 t
(1 row)

 count 
-------
     3
(1 row)

 record_trade 
--------------
 
(1 row)

 record_api_request 
--------------------
 
(1 row)

 record_exception 
------------------
 
(1 row)

 has_metrics 
-------------
 t
(1 row)

 worker_rows 
-------------
 t
(1 row)

 count 
-------
     0
(1 row)

 checks 
--------
 t
(1 row)

EOF

psql -X -q -h 127.0.0.1 -p "$bport" -U regress_trading_admin -d contrib_regression \
    -f "$work/stateless.sql" 2>&1 | sed 's/^psql:[^:]*:[0-9]*: //' > "$work/stateless.out"
if ! diff -u "$work/stateless.expected" "$work/stateless.out" > "$work/stateless.diffs"; then
    echo "  stateless ... FAILED"
    cat "$work/stateless.diffs" >> "$work/all.diffs"
    status=1
else
    echo "  stateless ... ok"
fi

if [ $status -ne 0 ]; then
    echo "---- diffs (through PgBouncer, transaction pooling)"
    cat "$work/all.diffs"
    fail "the regression suite fails through PgBouncer"
fi
echo "pgbouncer suite: $ntests regression tests and the stateless check pass through PgBouncer ($(grep '^pool_mode' "$work/pgbouncer.ini"))"
exit 0

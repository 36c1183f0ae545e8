#!/bin/sh
# trading: Patroni callback (on_start, on_role_change) that logs in once
# through the node's own PgBouncer after PostgreSQL (re)starts.
#
# Why: PgBouncer (1.18) remembers that a server login failed while the
# node's PostgreSQL was down or restarting, and then refuses the first new
# client of that pool at once ("server login has been failing, try again
# later (server_login_retry)", check_fast_fail) before it tries again.  The
# pool that looks users up (auth_query as pgbouncer_auth) is used only when
# a client logs in, so after a restart the first client HAProxy sends to the
# node would get that error.  One login here, retried until it succeeds,
# clears it before HAProxy puts the node back (3 good checks of its REST
# API).  Runs in the background; Patroni does not wait for callbacks.
#
#   pgbouncer_warm.sh HOST PORT DBNAME USER PASSFILE  [action role scope]
# (Patroni appends the last three.)  USER needs no privilege but LOGIN.
host=$1 port=$2 db=$3 user=$4 passfile=$5
i=0
while [ $i -lt 60 ]; do
    if psql -X -q -w -d "host=$host port=$port dbname=$db user=$user passfile=$passfile connect_timeout=2 gssencmode=disable" \
        -c 'SELECT 1' > /dev/null 2>&1; then
        exit 0
    fi
    i=$((i + 1))
    sleep 0.5
done
echo "pgbouncer_warm.sh: no login through $host:$port in 30 s" >&2
exit 1

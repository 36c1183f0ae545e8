#!/bin/sh
# trading: Patroni's post_bootstrap script (deploy/patroni/patroni.yml.in).
# Runs once, on the node that initialised the cluster, with a connection
# string of the superuser as its only argument.  Creates the trading
# database (TRADING_DATABASE, default "trading", the value of
# trading.database), the extension in it, and PgBouncer's auth_query
# function (deploy/pgbouncer_auth.sql, next to this directory or in it).
# Login roles and passwords are the site's business (scripts/ha.sh sets
# its own).  Replicas get everything by replication.
set -eu
db=${TRADING_DATABASE:-trading}
here=$(dirname "$(readlink -f "$0")")
auth_sql=$here/../pgbouncer_auth.sql
[ -f "$auth_sql" ] || auth_sql=$here/pgbouncer_auth.sql
psql -X -q -v ON_ERROR_STOP=1 -d "$1" -v db="$db" <<SQL
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
\connect :"db"
CREATE EXTENSION IF NOT EXISTS trading;
\i $auth_sql
SQL

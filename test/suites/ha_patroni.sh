#!/usr/bin/env bash
# The high-availability suite: scripts/ha.sh brings up etcd, three Patroni
# nodes, a PgBouncer each and HAProxy on free loopback ports, and
# test/suites/ha_patroni.py checks the promises of docs/HA.md across a node
# loss and a switchover (about 2-3 minutes).  Runs as the postgres user
# (scripts/test.sh); uses Debian's python3 with psycopg2 (a dependency of
# Patroni).  Logs of a run are left in tmp_check_ha/.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${PG_CONFIG:-}" ]; then
    export PATH="$("$PG_CONFIG" --bindir):$PATH"
fi
exec /usr/bin/python3 -B test/suites/ha_patroni.py

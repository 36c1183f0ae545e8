#!/usr/bin/env bash
# HA benchmark (docs/HA.md, "Measured"): write unavailability over 5 node
# losses (min, median, max) and the commit latency cost of
# synchronous_mode, in one run on the layout of scripts/ha.sh.  Run as
# root (after scripts/setup.sh) or as postgres; takes about 12 minutes.
#   PG_CONFIG=...           the PostgreSQL installation (default Debian's 15)
#   HA_BENCH_LOSSES=5       node losses
#   HA_BENCH_SECONDS=15     seconds per pgbench round
#   HA_BENCH_RATE=8         transactions a second of the one pgbench client
#   HA_BENCH_ROUNDS=3       rounds of each commit measurement
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PATH="$("$PG_CONFIG" --bindir):$PATH"
if [ "$(id -u)" = 0 ]; then
    exec runuser -u postgres -- env PATH="$PATH" PG_CONFIG="$PG_CONFIG" \
        HA_BENCH_LOSSES="${HA_BENCH_LOSSES:-5}" HA_BENCH_SECONDS="${HA_BENCH_SECONDS:-15}" HA_BENCH_RATE="${HA_BENCH_RATE:-8}" HA_BENCH_ROUNDS="${HA_BENCH_ROUNDS:-3}" \
        /usr/bin/python3 -B "$src/bench/ha_failover.py"
fi
exec /usr/bin/python3 -B "$src/bench/ha_failover.py"

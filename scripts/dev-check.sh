#!/usr/bin/env bash
# Developer loop (not used by CI): run a make target such as regresscheck or
# tapcheck as the postgres user in a copy of the tree, after `make install`
# as root.  DEV_DIR selects the copy, so several developers can test at once:
#   make && make install && DEV_DIR=/var/tmp/dev-crypto scripts/dev-check.sh \
#       regresscheck REGRESS="00_setup crypto"
#   DEV_DIR=/var/tmp/dev-corr scripts/dev-check.sh tapcheck PROVE_TESTS=t/030_correlation.pl
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dev=${DEV_DIR:-/var/tmp/trading-dev}
mkdir -p "$dev"
rsync -a --delete --exclude .git --exclude tmp_check --exclude tmp_check_regress \
    --exclude results "$src/" "$dev/src/"
rsync -a "${TRADING_SHARED:-$src/../shared}/" "$dev/shared/"
chown -R postgres:postgres "$dev"
cd "$dev/src"
# PG_CONFIG selects the installation (a private one from scripts/pgtree.sh)
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$pg_config" --bindir)
exec runuser -u postgres -- env TRADING_SHARED="$dev/shared" \
    PATH="$bindir:$PATH" make -s PG_CONFIG="$pg_config" "$@"

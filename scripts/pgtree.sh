#!/usr/bin/env bash
# Developer tool (not used by CI): make a private copy of the installed
# PostgreSQL 15 under DIR, so that several branches can `make install` and
# test at once without sharing one trading.so.  PostgreSQL finds its share
# and lib directories relative to its binaries, so the copy is complete:
#   scripts/pgtree.sh /var/tmp/pg-orders
#   make install PG_CONFIG=/var/tmp/pg-orders/usr/lib/postgresql/15/bin/pg_config
#   PG_CONFIG=/var/tmp/pg-orders/usr/lib/postgresql/15/bin/pg_config \
#       DEV_DIR=/var/tmp/dev-orders scripts/dev-check.sh tapcheck PROVE_TESTS=t/...
set -euo pipefail
dir=${1:?usage: scripts/pgtree.sh DIR}
[ -x "$dir/usr/lib/postgresql/15/bin/pg_config" ] && { echo "$dir/usr/lib/postgresql/15/bin/pg_config"; exit 0; }
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql" "$dir/usr/include/postgresql"
cp -a /usr/lib/postgresql/15 "$dir/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$dir/usr/share/postgresql/"
cp -a /usr/include/postgresql/15 "$dir/usr/include/postgresql/"
for f in /usr/include/postgresql/*; do
    [ "$(basename "$f")" = 15 ] || ln -sfn "$f" "$dir/usr/include/postgresql/"
done
chmod -R a+rX "$dir"
echo "$dir/usr/lib/postgresql/15/bin/pg_config"

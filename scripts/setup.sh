#!/usr/bin/env bash
# Install every dependency (Debian 12 packages listed in scripts/packages.txt),
# then build and install trading into the PostgreSQL 15 found by pg_config.
# Run as root.  Idempotent: a second run installs nothing new and rebuilds
# only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup.sh must run as root (it installs packages and the extension)" >&2
    exit 1
fi

missing=()
while read -r pkg; do
    case "$pkg" in ''|'#'*) continue ;; esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < scripts/packages.txt

if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building and installing trading"
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
make -s -j2 PG_CONFIG="$PG_CONFIG"
make -s install PG_CONFIG="$PG_CONFIG"

# The programs live in the server's bindir, which is not on PATH: link them
# where users find them (only for the system's PostgreSQL).
bindir=$("$PG_CONFIG" --bindir)
if [ "$bindir" = /usr/lib/postgresql/15/bin ]; then
    for p in trading-crypt trading-getkey-file; do
        ln -sfn "$bindir/$p" "/usr/local/bin/$p"
    done
fi

#!/usr/bin/env bash
# AES-256-GCM over 50 MB outside PostgreSQL: the cipher alone against fresh
# output pages (see bench/crypto_alloc.c).  Needs gcc and libssl-dev
# (scripts/setup.sh installs both).  Results: docs/ENCRYPTION_BENCH.md.
set -euo pipefail
cd "$(dirname "$0")"
bin=$(mktemp /tmp/crypto_alloc.XXXXXX)
trap 'rm -f "$bin"' EXIT
gcc -O2 -Wall -Wextra -Werror -o "$bin" crypto_alloc.c -lcrypto
"$bin"

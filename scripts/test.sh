#!/usr/bin/env bash
# README command 2: install everything (scripts/setup.sh), then run the whole
# test suite.  Postgres refuses to run as root, so the suites run as the
# unprivileged "postgres" user in a copy of the tree under /var/tmp.
# Exits non-zero when any suite fails, after printing its diffs and logs.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
# PG_CONFIG selects the installation (default: Debian's PostgreSQL 15; a
# developer may point it at a private copy from scripts/pgtree.sh)
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)

bash "$src/scripts/setup.sh" || { echo "setup failed"; exit 1; }

work=${TRADING_TEST_DIR:-/var/tmp/trading-tests}
rm -rf "$work"
mkdir -p "$work"
rsync -a --exclude .git "$src/" "$work/src/"
if [ -d "$src/../shared" ]; then
    rsync -a "$src/../shared/" "$work/shared/"
else
    echo "warning: ../shared not found beside the checkout; tests that need the Kite fixtures will fail" >&2
fi
chown -R postgres:postgres "$work"

as_pg() {
    runuser -u postgres -- env -C "$work/src" TRADING_SHARED="$work/shared" \
        PATH="$bindir:$PATH" "$@"
}

passed=0; failed=0; failed_names=()
run_suite() {
    local name=$1; shift
    echo
    echo "==== suite: $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failed_names+=("$name")
    fi
}

regress() {
    as_pg make -s regresscheck PG_CONFIG="$PG_CONFIG" && return 0
    echo "---- regression.diffs"
    cat "$work/src/regression.diffs" 2>/dev/null
    return 1
}

tap() {
    # --timer: each file's time, to watch the suite's length
    as_pg make -s tapcheck PG_CONFIG="$PG_CONFIG" PROVE_FLAGS="-I t/lib --timer" 2>&1 | tee "$work/tap.out"
    [ "${PIPESTATUS[0]}" -eq 0 ] && return 0
    # the logs of the failed files only (prove's summary names them)
    local t f
    for t in $(sed -n 's|^t/\([^ ]*\)\.pl  *(Wstat.*|\1|p' "$work/tap.out" | sort -u); do
        f="$work/src/tmp_check/log/regress_log_$t"
        [ -f "$f" ] || continue
        echo "---- $f: failures"
        grep -n -A 12 'not ok' "$f" | head -n 80
        echo "---- $f (last 40 lines)"
        tail -n 40 "$f"
    done
    return 1
}

run_suite "pg_regress" regress
run_suite "tap" tap
for extra in "$src"/test/suites/*.sh; do
    [ -f "$extra" ] || continue
    run_suite "$(basename "$extra" .sh)" as_pg bash "$work/src/test/suites/$(basename "$extra")"
done

echo
if [ "$failed" -gt 0 ]; then
    echo "failed suites: ${failed_names[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Instrument master load: trading.refresh_instruments() (HTTP download from
# the paper broker + COPY through BeginCopyFrom + watchlist check) against
# psql's \copy of the same CSV file, in the same run, on the same table.
#   bench/market_instruments.sh [rows] [rounds]
# Two comparisons, each the median of the rounds:
#   first load:  into an empty table        vs  \copy into the emptied table
#   daily load:  replacing the whole list   vs  BEGIN; DELETE; \copy; COMMIT
# Target: at most 1.5x.  Results: docs/MARKET_DATA.md.
# Run as root (after scripts/setup.sh) or postgres; PGBIN selects the server.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/bench/lib.sh"
rows=${1:-100000}
rounds=${2:-5}
work=$(mktemp -d)
chmod 755 "$work"
cleanup() { kill "$broker_pid" 2>/dev/null || true; bench_cluster_stop; rm -rf "$work"; }
trap cleanup EXIT

"$src/broker/paper-broker" --port 0 --admin-port -1 --port-file "$work/port" \
    --synthetic-instruments "$rows" --tick-ms 0 --quiet --log /dev/null &
broker_pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$work/port")"
curl -sf "$url/instruments" > "$work/instruments.csv"
chmod 644 "$work/instruments.csv"
n=$(( $(wc -l < "$work/instruments.csv") - 1 ))

bench_cluster_start market_instruments "trading.broker_url = '$url'
trading.market_worker = off"
trap cleanup EXIT       # bench_cluster_start set its own
bench_psql -c 'CREATE EXTENSION trading'
echo "$n instruments ($(du -k "$work/instruments.csv" | cut -f1) kB CSV); $(nproc) cores; $(date -u +%FT%TZ)"

# milliseconds of one psql script, timed by psql itself (\timing)
ms_of() {
    bench_psql -c '\timing on' "$@" | awk '/^Time: / {t=$2} END {print t}'
}
copy="\\copy trading.instruments FROM '$work/instruments.csv' WITH (FORMAT csv, HEADER match)"

: > "$work/first_copy"; : > "$work/first_load"; : > "$work/daily_copy"; : > "$work/daily_load"
for r in $(seq "$rounds"); do
    bench_psql -c 'TRUNCATE trading.instruments' -c 'VACUUM trading.instruments'
    ms_of -c "$copy" >> "$work/first_copy"
    bench_psql -c 'TRUNCATE trading.instruments' -c 'VACUUM trading.instruments'
    ms_of -c 'SELECT trading.refresh_instruments()' >> "$work/first_load"
    # the psql replacement's total is the sum of its statements
    bench_psql -c 'VACUUM trading.instruments'
    bench_psql -c '\timing on' -c 'BEGIN' -c 'DELETE FROM trading.instruments' -c "$copy" -c 'COMMIT' \
        | awk '/^Time: / {t+=$2} END {print t}' >> "$work/daily_copy"
    bench_psql -c 'VACUUM trading.instruments'
    ms_of -c 'SELECT trading.refresh_instruments()' >> "$work/daily_load"
done
fc=$(median < "$work/first_copy"); fl=$(median < "$work/first_load")
dc=$(median < "$work/daily_copy"); dl=$(median < "$work/daily_load")
printf '%-44s %9s ms\n' "psql \\copy into an empty table" "$fc"
printf '%-44s %9s ms   %.2fx\n' "refresh_instruments(), empty table" "$fl" "$(echo "$fl / $fc" | bc -l)"
printf '%-44s %9s ms\n' "psql DELETE + \\copy (one transaction)" "$dc"
printf '%-44s %9s ms   %.2fx\n' "refresh_instruments(), replacing the list" "$dl" "$(echo "$dl / $dc" | bc -l)"
printf '%-44s %9s      %.2fx\n' "replacing vs psql \\copy into an empty table" "" "$(echo "$dl / $fc" | bc -l)"

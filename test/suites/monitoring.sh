#!/usr/bin/env bash
# Offline checks of monitoring/ (run by scripts/test.sh from the tree root):
#   - the Prometheus config, the alert rules and their promtool unit tests;
#   - queries.yaml: the metric names it produces are exactly the catalogue
#     of extension/sql/*.sql (70_metrics_business.sql and the capabilities
#     that add to it), and no key contains "pg"
#     (postgres_exporter 0.11 rewrites the first "pg" of a key);
#   - the Grafana dashboard: valid JSON, the required panels, every query
#     parses as PromQL and names only metrics the exporter produces;
#   - every PromQL block of docs/MONITORING.md parses and names only those
#     metrics.
# The end-to-end checks (real exporter and Prometheus) are in
# t/070_metrics_exporter.pl.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

promtool check config monitoring/prometheus.yml
promtool check rules monitoring/alerts.yml
promtool test rules monitoring/alerts_test.yml

# ---- names produced by queries.yaml (key_column, LABEL columns excluded)
awk '
    /^[a-z][a-z0-9_]*:$/      { key = substr($1, 1, length($1) - 1); next }
    /^    - [a-z0-9_]+:$/     { col = $2; sub(":$", "", col); next }
    /^        usage:/         { u = $2; gsub("\"", "", u); if (u != "LABEL") print key "_" col }
' monitoring/queries.yaml | sort > "$tmp/yaml_names"
grep -ohE "^    \('trading_[a-z0-9_]+', '(counter|gauge|histogram)'" extension/sql/*.sql \
    | sed -E "s/^    \('([a-z0-9_]+)'.*/\1/" | sort > "$tmp/catalog_names"
if ! diff -u "$tmp/catalog_names" "$tmp/yaml_names"; then
    err "queries.yaml and trading.metrics_catalog disagree on metric names"
fi
[ "$(wc -l < "$tmp/yaml_names")" -ge 30 ] || err "queries.yaml produces too few metrics"
if grep -E '^[a-z0-9_]*pg[a-z0-9_]*:$' monitoring/queries.yaml; then
    err "a queries.yaml key contains \"pg\""
fi
# series names: histograms also give _bucket, _sum and _count
awk '{ print } /duration_seconds$/ { print $0 "_bucket"; print $0 "_sum"; print $0 "_count" }' \
    "$tmp/yaml_names" | sort > "$tmp/series_names"

# ---- PromQL: parse with promtool (as recording rules) and check names
check_promql() {   # $1: label for messages, stdin: one expression per line
    local what=$1 n=0
    {
        echo "groups:"
        echo "  - name: check"
        echo "    rules:"
        while IFS= read -r expr; do
            n=$((n + 1))
            expr=${expr//\$__rate_interval/5m}
            printf '      - record: check:%s:%d\n        expr: %s\n' "$what" "$n" \
                "$(printf '%s' "$expr" | jq -Rs .)"
            for m in $(printf '%s' "$expr" | grep -oE '\btrading_[a-z_]+' | sort -u); do
                grep -qx "$m" "$tmp/series_names" || err "$what: unknown metric $m in: $expr"
            done
        done
    } > "$tmp/$what.rules.yml"
    promtool check rules "$tmp/$what.rules.yml" >/dev/null || err "$what: PromQL does not parse"
    echo "$what: $n expressions parse"
}

# ---- the dashboard
jq -e . monitoring/grafana-dashboard.json >/dev/null || err "dashboard is not valid JSON"
for title in "Total PnL" "Daily PnL (IST)" "Win rate" "Active positions" \
             "API latency p95 per endpoint" "API error rate per endpoint (5xx, no response)"; do
    jq -e --arg t "$title" 'any(.panels[]; .title == $t)' monitoring/grafana-dashboard.json >/dev/null \
        || err "dashboard lacks the panel \"$title\""
done
jq -e 'all(.panels[]; (.targets | length) > 0 and all(.targets[]; (.expr | length) > 0 and .datasource.uid == "${DS_PROMETHEUS}"))' \
    monitoring/grafana-dashboard.json >/dev/null || err "a dashboard panel has no query or no data source"
jq -e '[.panels[].id] | length == (unique | length)' monitoring/grafana-dashboard.json >/dev/null \
    || err "dashboard panel ids are not unique"
jq -r '.panels[].targets[].expr' monitoring/grafana-dashboard.json | check_promql dashboard
jq -r '.panels[].targets[].expr' monitoring/grafana-dashboard.json | grep -q 'histogram_quantile(0.95' \
    || err "dashboard has no p95 latency"

# ---- docs/MONITORING.md
awk '/^```promql$/ { inb = 1; e = ""; next }
     /^```$/ && inb { inb = 0; print e; next }
     inb { e = (e == "" ? $0 : e " " $0) }' docs/MONITORING.md > "$tmp/docs_exprs"
[ "$(wc -l < "$tmp/docs_exprs")" -ge 8 ] || err "docs/MONITORING.md has too few PromQL blocks"
check_promql docs < "$tmp/docs_exprs"

if [ "$fail" -ne 0 ]; then
    echo "monitoring checks failed" >&2
    exit 1
fi
echo "monitoring checks passed"

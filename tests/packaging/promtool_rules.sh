#!/bin/sh
# `promtool check rules` and `promtool test rules` on the shipped Prometheus rules: any
# finding or failing unit test fails, and so does an alert without a unit test or that the
# operations guide does not explain. Without promtool the test fails under CI and is skipped
# elsewhere (exit 77).
set -u
rules=$1
tests=$2
docs=$3
alerts=$(sed -n 's/^ *- alert: *//p' "$rules")
[ -n "$alerts" ] || { echo "no alert in $rules"; exit 1; }
for alert in $alerts; do
    grep -q "alertname: $alert\$" "$tests" || { echo "$alert has no test in $tests"; exit 1; }
    grep -q "^| \`$alert\` |" "$docs" || { echo "$alert is not explained in $docs"; exit 1; }
done
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian package prometheus, see .ci/install-deps)"
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
promtool check rules "$rules" || exit 1
# promtool resolves rule_files relative to the test file.
promtool test rules "$tests"

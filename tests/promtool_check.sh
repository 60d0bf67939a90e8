#!/bin/sh
# Runs `promtool check metrics` on a real scrape written by scrape_sample; any finding
# (syntax error or lint problem) fails the test. Without promtool the test fails under CI
# and is skipped elsewhere (exit 77).
set -u
scrape_sample=$1
output=$2
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian package prometheus, see .ci/install-deps)"
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
"$scrape_sample" "$output" || exit 1
findings=$(promtool check metrics < "$output" 2>&1)
status=$?
echo "promtool check metrics: exit $status, $(grep -c '^# TYPE' "$output") families checked"
if [ $status -ne 0 ] || [ -n "$findings" ]; then
    echo "$findings"
    exit 1
fi

#!/bin/sh
# `promtool check rules` and `promtool test rules` on the shipped Prometheus rules: any
# finding or failing unit test fails. Without promtool the test fails under CI and only
# warns elsewhere.
set -u
rules=$1
tests=$2
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian package prometheus, see .ci/install-deps)"
    [ "${CI:-}" != true ]
    exit
fi
promtool check rules "$rules" || exit 1
# promtool resolves rule_files relative to the test file.
promtool test rules "$tests"

# shellcheck shell=bash
# Sourced by the shell tests: how they log, fail, and refuse to pass by skipping.

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# A test that cannot run here: a warning and exit 0 on a developer's machine, a failure in
# CI (CI=true), so that CI never passes by skipping.
cannot_run() {
    if [[ ${CI:-} == true ]]; then fail "cannot run under CI: $*"; fi
    echo "WARNING: test not run: $*" >&2
    exit 0
}

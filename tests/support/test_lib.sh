# shellcheck shell=bash
# Sourced by the shell tests: how they log, fail, and refuse to pass by skipping.

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# Ends the test with its usage (exit 2) unless it got exactly COUNT arguments:
# `expect_arguments COUNT "ARG_NAMES" "$@"`.
expect_arguments() {
    local count=$1 names=$2
    shift 2
    if [[ $# -ne $count ]]; then
        echo "usage: $0 $names" >&2
        exit 2
    fi
}
# A test that cannot run here: skipped (exit 77, SKIP_RETURN_CODE in tests/CMakeLists.txt) on
# a developer's machine, a failure in CI (CI=true), so that CI never passes by skipping.
cannot_run() {
    if [[ ${CI:-} == true ]]; then fail "cannot run under CI: $*"; fi
    echo "skipped: $*" >&2
    exit 77
}
# cannot_run unless every TOOL (a command) is installed.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || cannot_run "$tool is missing (.ci/install-deps installs it)"
    done
}
# cannot_run without the kernel BTF that loading the program needs.
require_btf() {
    [[ -r /sys/kernel/btf/vmlinux ]] || cannot_run "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
}
# Sets `deb` to the package the fixture test "packaging: build the .deb" built into DIR
# (cannot_run without one). Not a command substitution: cannot_run must end the test itself.
find_built_deb() {
    deb=$(find "$1" -maxdepth 1 -name 'tcpstatesd_*.deb' 2>/dev/null)
    [[ -f $deb ]] || cannot_run "no tcpstatesd_*.deb in $1 (the fixture test \"packaging: build the .deb\" builds it)"
}

#!/usr/bin/env bash
# Checks systemd/tcpstatesd.service statically: `systemd-analyze verify` reports nothing, and
# the `systemd-analyze security` exposure score is no worse than the one recorded in
# docs/operations.md (the line "→ Overall exposure level for tcpstatesd.service: N.N ...").
#
# Usage: unit_security.sh UNIT BINARY OPERATIONS_MD
# verify checks that ExecStart's program exists; the unit names the installed path
# /usr/sbin/tcpstatesd, so a copy pointing at the built BINARY is verified (nothing else differs).
set -euo pipefail

unit=${1:?usage: $0 UNIT BINARY OPERATIONS_MD} binary=$(realpath "${2:?}") docs=${3:?}
# shellcheck source-path=SCRIPTDIR source=../support/test_lib.sh
source "$(dirname "$(realpath "$0")")/../support/test_lib.sh"
command -v systemd-analyze >/dev/null || cannot_run "systemd-analyze is missing (package systemd)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy="$work/tcpstatesd.service"
sed "s|^ExecStart=/usr/sbin/tcpstatesd |ExecStart=$binary |" "$unit" >"$copy"
grep -q "^ExecStart=$binary " "$copy" || fail "no ExecStart=/usr/sbin/tcpstatesd line in $unit"

if ! report=$(systemd-analyze verify --man=no "$copy" 2>&1) || [[ -n $report ]]; then
    fail "systemd-analyze verify $unit:
$report"
fi
echo "systemd-analyze verify: clean"

score_of() { sed -nE 's/.*Overall exposure level for tcpstatesd\.service: ([0-9]+\.[0-9]+).*/\1/p' | head -n1; }
measured=$(systemd-analyze security --offline=true --no-pager "$copy" | score_of)
recorded=$(score_of <"$docs")
[[ -n $measured ]] || fail "no exposure level in the output of systemd-analyze security"
[[ -n $recorded ]] || fail "no recorded exposure level in $docs"
echo "exposure level: measured $measured, recorded $recorded"
awk -v m="$measured" -v r="$recorded" 'BEGIN { exit !(m <= r) }' ||
    fail "the unit's exposure level got worse: $measured > $recorded (recorded in $docs)"

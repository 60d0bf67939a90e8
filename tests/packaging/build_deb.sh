#!/usr/bin/env bash
# The Debian package the packaging tests share (CTest fixture `tcpstatesd_deb`): built once
# per run with packaging/build-deb.sh from the daemon BUILD_DIR has built (the binary the
# other tests test: nothing is compiled again) into OUTPUT_DIR, which is emptied first so that
# it holds this build only. The package test and the container image test take it from there.
#
# Usage: build_deb.sh SOURCE_DIR BUILD_DIR OUTPUT_DIR
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../support/test_lib.sh
source "$(dirname "$(realpath "$0")")/../support/test_lib.sh"
expect_arguments 3 "SOURCE_DIR BUILD_DIR OUTPUT_DIR" "$@"

require_tools dpkg-buildpackage dh

rm -rf "$3"
log "packaging/build-deb.sh --prebuilt $2 $3"
"$1/packaging/build-deb.sh" --prebuilt "$2" "$3" || fail "the package build failed"

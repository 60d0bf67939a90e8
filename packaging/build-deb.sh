#!/usr/bin/env bash
# Builds the Debian package tcpstatesd_VERSION_ARCH.deb from this tree with dpkg-buildpackage.
#
# Usage: packaging/build-deb.sh [--prebuilt BUILD_DIR] [OUTPUT_DIR]    (default OUTPUT_DIR: build/deb)
#
# By default the daemon is configured and compiled from the source, as a Debian build does.
# With --prebuilt, the package takes the daemon a build tree of this source has already built
# (`cmake --install BUILD_DIR`, e.g. build/default after `cmake --build --preset default`)
# instead of compiling it again: the test suite packages the binary it tests. Everything else
# (maintainer scripts, stripping, dependencies, the other files) is made the same way.
#
# dpkg-buildpackage wants debian/ at the root of the source and writes its results next to
# it, so the tree's files (tracked and untracked-but-not-ignored, as they are now on disk)
# are copied into a temporary directory, packaging/debian is put at the copy's root, and the
# .deb, .buildinfo and .changes are moved to OUTPUT_DIR. The tree itself is left untouched.
# The build dependencies are checked (packaging/debian/control); .ci/install-deps has them.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
prebuilt=""
if [[ ${1:-} == --prebuilt ]]; then
    [[ -n ${2:-} ]] || { echo "usage: $0 [--prebuilt BUILD_DIR] [OUTPUT_DIR]" >&2; exit 2; }
    prebuilt=$(cd "$2" && pwd)
    shift 2
    # The tree whose binary is packaged must be this one.
    configured_from=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$prebuilt/CMakeCache.txt" 2>/dev/null || true)
    [[ $configured_from -ef $top ]] || {
        echo "$prebuilt is not a build tree of $top (its CMakeCache.txt names '$configured_from')" >&2
        exit 1
    }
    [[ -x $prebuilt/tcpstatesd ]] || {
        echo "$prebuilt/tcpstatesd does not exist: build it first (cmake --build $prebuilt)" >&2
        exit 1
    }
fi
out=$(mkdir -p "${1:-$top/build/deb}" && cd "${1:-$top/build/deb}" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/tcpstatesd"
mkdir "$src"

cd "$top"
git ls-files --cached --others --exclude-standard |
    grep -vxF -f <(git ls-files --deleted) |
    tar -cf - --verbatim-files-from -T - | tar -xf - -C "$src"
rm -rf "$src/debian"
cp -r packaging/debian "$src/debian"

# The copy has no .git; `tcpstatesd --version` shows this revision (with "-dirty" when the
# tree has uncommitted changes, since those are in the package too). A prebuilt daemon shows
# the revision its build tree was configured at.
revision=$(git rev-parse --short=12 HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then revision+="-dirty"; fi

cd "$src"
TCPSTATESD_GIT_REVISION=$revision TCPSTATESD_PREBUILT_DIR=$prebuilt \
    dpkg-buildpackage --build=binary --no-sign -j2 >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "dpkg-buildpackage failed (last lines above)" >&2
    exit 1
}
cp "$work/build.log" "$out/build.log"
for file in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
    mv "$file" "$out/"
    echo "$out/$(basename "$file")"
done

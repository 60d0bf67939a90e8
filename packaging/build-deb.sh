#!/usr/bin/env bash
# Builds the Debian package tcpstatesd_VERSION_ARCH.deb from this tree with dpkg-buildpackage.
#
# Usage: packaging/build-deb.sh [OUTPUT_DIR]        (default OUTPUT_DIR: build/deb)
#
# dpkg-buildpackage wants debian/ at the root of the source and writes its results next to
# it, so the tree's files (tracked and untracked-but-not-ignored, as they are now on disk)
# are copied into a temporary directory, packaging/debian is put at the copy's root, and the
# .deb, .buildinfo and .changes are moved to OUTPUT_DIR. The tree itself is left untouched.
# The build dependencies are checked (packaging/debian/control); .ci/install-deps has them.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
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
# tree has uncommitted changes, since those are in the package too).
revision=$(git rev-parse --short=12 HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then revision+="-dirty"; fi

cd "$src"
TCPSTATESD_GIT_REVISION=$revision dpkg-buildpackage --build=binary --no-sign -j2 \
    >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "dpkg-buildpackage failed (last lines above)" >&2
    exit 1
}
cp "$work/build.log" "$out/build.log"
for file in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
    mv "$file" "$out/"
    echo "$out/$(basename "$file")"
done

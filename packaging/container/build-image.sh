#!/usr/bin/env bash
# Builds the tcpstatesd container image from the Debian package with Debian's own tools;
# nothing comes from an image registry:
#   1. a minimal root of this host's Debian release: debootstrap --variant=minbase
#      (packaging/container/debian_root.sh), or a copy of --base-root DIR;
#   2. apt-get installs the package into it, its dependencies from the mirror;
#   3. what the daemon does not need at run time goes: apt's package lists and caches, the
#      documentation except the copyright files, man and info pages, translations, logs, and
#      the build host's /etc/resolv.conf and /etc/hostname (container runtimes provide them);
#   4. podman builds the image from that root with packaging/container/Containerfile
#      (FROM scratch), tagged with the package version.
#
# Usage: packaging/container/build-image.sh [--base-root DIR] DEB [IMAGE]      (as root)
#
#   DEB     the package, from packaging/build-deb.sh (build/deb/tcpstatesd_VERSION_ARCH.deb)
#   IMAGE   the image name, default localhost/tcpstatesd; the tag is the package version
#   --base-root DIR   start from a copy of DIR, a debootstrap --variant=minbase root of this
#           release, instead of debootstrapping a new one (the test keeps one cached)
#
# The last line it prints is the image reference, IMAGE:VERSION.
set -euo pipefail

usage="usage: $0 [--base-root DIR] DEB [IMAGE]"
base_root=""
if [[ ${1:-} == --base-root ]]; then
    base_root=${2:?$usage}
    shift 2
fi
if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "$usage" >&2
    exit 2
fi

die() { echo "build-image.sh: $*" >&2; exit 1; }

here=$(dirname "$(realpath "$0")")
# shellcheck source-path=SCRIPTDIR source=debian_root.sh
source "$here/debian_root.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot)"
for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install $tool"
done
[[ -f $1 ]] || die "no package at $1: build it with packaging/build-deb.sh"
deb=$(realpath "$1")
[[ $(dpkg-deb -f "$deb" Package) == tcpstatesd ]] || die "$1 is not the tcpstatesd package"
version=$(dpkg-deb -f "$deb" Version)
image="${2:-localhost/tcpstatesd}:$version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

if [[ -n $base_root ]]; then
    [[ -x $base_root/usr/bin/apt-get ]] || die "--base-root $base_root is not a Debian root"
    cp -a "$base_root" "$root"
else
    debian_root "$root" "$work/debootstrap.log" || {
        tail -n 20 "$work/debootstrap.log" >&2
        exit 1
    }
fi

in_root() {
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}
# apt in the root reaches the mirror with the host's resolver settings.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
echo "installing $(basename "$deb") and its dependencies into the root" >&2
{
    in_root apt-get update -qq &&
        in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")"
} >"$work/apt.log" 2>&1 || {
    tail -n 30 "$work/apt.log" >&2
    die "apt-get could not install the package into the root (last lines above)"
}

in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root/etc/resolv.conf" "$root/etc/hostname"
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$root/var/log" -type f -delete

mkdir "$work/context"
tar --numeric-owner -C "$root" -cf "$work/context/rootfs.tar" .
echo "podman build: $image" >&2
# --layers=false: no intermediate image is kept for each instruction.
podman build --quiet --layers=false --file "$here/Containerfile" \
    --build-arg "VERSION=$version" --tag "$image" "$work/context" >/dev/null
echo "$image"

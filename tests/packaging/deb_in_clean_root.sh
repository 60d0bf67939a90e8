#!/usr/bin/env bash
# shellcheck disable=SC2016,SC1091 # dpkg-query's own ${Field} syntax; /etc/os-release
# Builds the Debian package with packaging/build-deb.sh, checks it with lintian, then installs
# it with apt (dependencies from the Debian mirror) into a clean minimal Debian root and checks
# what it installed: the binary runs (--version, --check-config on the packaged configuration),
# files are in place, the conffile is registered and kept across a reinstall, the unit is
# enabled, the man page is found; then removes and purges it and checks nothing is left.
#
# Usage: deb_in_clean_root.sh SOURCE_DIR WORK_DIR        (as root)
#
# The root (debootstrap --variant=minbase plus man-db) is built once and cached under
# /var/cache/tcpstatesd-test/packaging/, like the systemd test's (a directory of its own:
# that test keeps one root per package set and removes the others). Each run works on an
# overlay of it (writes go to a tmpfs) in a private mount namespace, so the cached root is
# never changed and no mount outlives the test.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SOURCE_DIR WORK_DIR" >&2
    exit 2
fi

log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
cannot_run() {
    if [[ ${CI:-} == true ]]; then fail "cannot run under CI: $*"; fi
    echo "WARNING: test not run: $*" >&2
    exit 0
}

[[ $(id -u) -eq 0 ]] || cannot_run "needs root (debootstrap, mount, chroot)"
for tool in dpkg-buildpackage dh lintian debootstrap unshare flock; do
    command -v "$tool" >/dev/null || cannot_run "$tool is missing (.ci/install-deps installs it)"
done

# Mounts made from here on vanish with the namespace, whatever way the test ends.
if [[ -z ${TCPSTATESD_PRIVATE_MOUNTS:-} ]]; then
    TCPSTATESD_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private "$0" "$@"
fi

source_dir=$(realpath "$1")
work=$(realpath -m "$2")
rm -rf "$work"
mkdir -p "$work"

# --- Build and lint -------------------------------------------------------------------------

log "packaging/build-deb.sh"
"$source_dir/packaging/build-deb.sh" "$work/deb" || fail "the package build failed"
deb=$(find "$work/deb" -name 'tcpstatesd_*.deb')
[[ -f $deb ]] || fail "no tcpstatesd_*.deb in $work/deb"
version=$(dpkg-deb -f "$deb" Version)
log "built $(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"

log "lintian"
# Every tag, pedantic and experimental ones too, fails the test; tags accepted on purpose are
# overridden in packaging/debian/tcpstatesd.lintian-overrides and explained in
# docs/operations.md.
lintian --display-info --display-experimental --pedantic \
    --fail-on error,warning,info,pedantic,experimental "$work"/deb/*.changes ||
    fail "lintian reports the tags above"
log "lintian: no tags"

# --- The clean root, cached -----------------------------------------------------------------

codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
debian_mirror() {
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
        awk -v suite="$codename" '$2 == suite && $3 == "main" {print $1; exit}'
}
packages=man-db
cache=/var/cache/tcpstatesd-test/packaging
clean_root="$cache/$codename-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
mkdir -p "$cache"
(
    flock 9
    if [[ ! -f $clean_root/.complete ]]; then
        mirror=$(debian_mirror)
        [[ -n $mirror ]] || fail "no $codename main source in apt's configuration"
        log "building the clean root $clean_root from $mirror"
        rm -rf "$clean_root.partial"
        debootstrap --variant=minbase --include="$packages" "$codename" "$clean_root.partial" \
            "$mirror" >"$cache/debootstrap.log" 2>&1 ||
            fail "debootstrap failed, see $cache/debootstrap.log"
        touch "$clean_root.partial/.complete"
        mv "$clean_root.partial" "$clean_root"
        find "$cache" -mindepth 1 -maxdepth 1 -type d -name "$codename-*" ! -path "$clean_root" \
            -exec rm -rf {} +
    fi
) 9>"$cache/lock"

# The overlay's writable layer is a tmpfs (an upper layer cannot live on every file system,
# e.g. not on overlayfs as in many CI containers); it goes with the namespace.
root="$work/root" writable="$work/writable"
mkdir -p "$root" "$writable"
mount -t tmpfs -o mode=0755 tmpfs "$writable"
mkdir "$writable/upper" "$writable/work"
mount -t overlay overlay \
    -o "lowerdir=$clean_root,upperdir=$writable/upper,workdir=$writable/work" "$root"
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No service is started in a chroot (there is no systemd here anyway).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

# --- Install --------------------------------------------------------------------------------

log "apt-get update && apt-get install ./$(basename "$deb") (in the clean root)"
cp "$deb" "$root/tmp/"
in_root apt-get update -qq >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update failed"; }
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
    { tail -n 30 "$work/apt.log"; fail "apt-get install of the package failed"; }
grep -E '^(Setting up|Unpacking) ' "$work/apt.log" | sed 's/^/    /'
[[ $(in_root dpkg-query -W -f='${Status}' tcpstatesd) == "install ok installed" ]] ||
    fail "tcpstatesd is not installed: $(in_root dpkg-query -W -f='${Status}' tcpstatesd)"

# --- What it installed ----------------------------------------------------------------------

out=$(in_root tcpstatesd --version) || fail "tcpstatesd --version failed: $out"
[[ $out == "tcpstatesd $version ("* ]] ||
    fail "tcpstatesd --version says '$out'; the package version is $version (CMakeLists.txt project VERSION and packaging/debian/changelog must agree)"
log "tcpstatesd --version: $out"

out=$(in_root tcpstatesd --check-config 2>&1) || fail "tcpstatesd --check-config on the packaged /etc/tcpstatesd/tcpstatesd.yaml failed: $out"
log "tcpstatesd --check-config: ${out:-(no output)}, exit 0"
# The same command must fail on a bad file: the 0 above means the packaged file was checked.
printf 'web:\n  listen_adress: ":9977"\n' >"$root/tmp/broken.yaml"
if out=$(in_root tcpstatesd --check-config --config /tmp/broken.yaml 2>&1); then
    fail "--check-config accepted a file with an unknown key: $out"
fi
log "tcpstatesd --check-config on a bad file: exit non-zero: $out"

check_same() {  # FILE_IN_TREE PATH_IN_ROOT MODE
    [[ -f $root$2 ]] || fail "$2 is not installed"
    cmp -s "$1" "$root$2" || fail "$2 differs from $1"
    [[ $(stat -c %a "$root$2") == "$3" ]] || fail "$2 has mode $(stat -c %a "$root$2"), want $3"
}
[[ $(stat -c %a "$root/usr/sbin/tcpstatesd") == 755 ]] || fail "/usr/sbin/tcpstatesd is not mode 755"
# 0644: the unit's DynamicUser= must be able to read it.
check_same "$source_dir/config/tcpstatesd.yaml" /etc/tcpstatesd/tcpstatesd.yaml 644
check_same "$source_dir/systemd/tcpstatesd.service" /lib/systemd/system/tcpstatesd.service 644
shared=0
for file in "$source_dir"/packaging/grafana/*.json "$source_dir"/packaging/prometheus/*.yml; do
    [[ -f $file ]] || continue
    check_same "$file" "/usr/share/tcpstatesd/$(basename "$(dirname "$file")")/$(basename "$file")" 644
    shared=$((shared + 1))
done
for file in /usr/share/doc/tcpstatesd/copyright /usr/share/doc/tcpstatesd/changelog.gz; do
    [[ -f $root$file ]] || fail "$file is not installed"
done
log "files in place: binary, configuration, unit, $shared dashboard/rules files, copyright, changelog"

conffiles=$(in_root dpkg-query -W -f='${Conffiles}' tcpstatesd)
md5=$(md5sum <"$root/etc/tcpstatesd/tcpstatesd.yaml" | cut -d' ' -f1)
grep -qx " /etc/tcpstatesd/tcpstatesd.yaml $md5" <<<"$conffiles" ||
    fail "/etc/tcpstatesd/tcpstatesd.yaml is not registered as a conffile with its md5 $md5: '$conffiles'"
log "conffile registered:$conffiles"

[[ -L $root/etc/systemd/system/multi-user.target.wants/tcpstatesd.service ]] ||
    fail "the unit is not enabled (no multi-user.target.wants link)"
log "unit enabled: $(readlink "$root/etc/systemd/system/multi-user.target.wants/tcpstatesd.service")"

page=$(in_root man -w tcpstatesd) || fail "man -w tcpstatesd finds no page"
[[ $page == /usr/share/man/man8/tcpstatesd.8.gz ]] || fail "man -w tcpstatesd: $page"
in_root env MANWIDTH=80 man tcpstatesd 2>&1 | grep -q 'check-config' ||
    fail "man tcpstatesd does not render a page describing --check-config"
log "man -w tcpstatesd: $page"

# An administrator's change to the conffile survives a reinstall of the package.
echo "# changed by the administrator" >>"$root/etc/tcpstatesd/tcpstatesd.yaml"
in_root dpkg -i "/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 || fail "reinstalling failed"
grep -q '^# changed by the administrator$' "$root/etc/tcpstatesd/tcpstatesd.yaml" ||
    fail "reinstalling the package replaced the changed conffile"
log "a changed conffile is kept on reinstall"

# --- Remove and purge -----------------------------------------------------------------------

files=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\.||' | grep -v '/$')
in_root dpkg --remove tcpstatesd >>"$work/apt.log" 2>&1 || fail "dpkg --remove failed"
[[ $(in_root dpkg-query -W -f='${db:Status-Abbrev}' tcpstatesd) == "rc " ]] ||
    fail "after remove: status '$(in_root dpkg-query -W -f='${db:Status-Abbrev}' tcpstatesd)', want rc"
[[ ! -e $root/usr/sbin/tcpstatesd ]] || fail "/usr/sbin/tcpstatesd left after remove"
[[ -f $root/etc/tcpstatesd/tcpstatesd.yaml ]] || fail "remove deleted the conffile (only purge may)"
log "removed: the binary is gone, the conffile stays"

in_root dpkg --purge tcpstatesd >>"$work/apt.log" 2>&1 || fail "dpkg --purge failed"
in_root dpkg-query -W tcpstatesd >/dev/null 2>&1 && fail "tcpstatesd still known to dpkg after purge"
left=""
for file in $files /etc/tcpstatesd /usr/share/tcpstatesd /etc/systemd/system/multi-user.target.wants/tcpstatesd.service; do
    if [[ -e $root$file || -L $root$file ]]; then left+=" $file"; fi
done
[[ -z $left ]] || fail "left after purge:$left"
log "purged: none of the package's $(wc -w <<<"$files") files, /etc/tcpstatesd or the enable link is left"
log "PASS"

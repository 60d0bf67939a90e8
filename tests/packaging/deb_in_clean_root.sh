#!/usr/bin/env bash
# shellcheck disable=SC2016 # dpkg-query's ${Field} syntax
# Checks the Debian package (built by the fixture test "packaging: build the .deb",
# tests/packaging/build_deb.sh) with lintian, then installs it with apt (dependencies from the
# Debian mirror) into a clean minimal Debian root and checks what it installed: the binary
# runs (--version, --check-config on the packaged configuration), files are in place, the
# conffile is registered and kept across a reinstall, the unit is enabled, the man page is
# found. Then it boots that root with systemd-nspawn and checks, under a real systemd, that
# the enabled unit started at boot, that installing the package again (what an upgrade does)
# restarts it, that it reloads, that tcpstatesd.socket (installed disabled) starts the service
# on the first scrape, that removing the package stops it, and that a purge leaves nothing.
#
# Usage: deb_in_clean_root.sh SOURCE_DIR DEB_DIR WORK_DIR        (as root)
#
# The root (debootstrap --variant=minbase plus man-db and systemd; none of the daemon's
# libraries) is built once and cached under /var/cache/tcpstatesd-test/packaging/ by
# tests/support/container_root.sh, as the systemd test's. Each run works on an overlay of it
# (writes go to a tmpfs) in a private mount namespace, so the cached root is never changed
# and no mount outlives the test.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../support/test_lib.sh
source "$(dirname "$(realpath "$0")")/../support/test_lib.sh"
expect_arguments 3 "SOURCE_DIR DEB_DIR WORK_DIR" "$@"

[[ $(id -u) -eq 0 ]] || cannot_run "needs root (debootstrap, mount, chroot)"
require_tools lintian debootstrap unshare flock systemd-nspawn nsenter
require_btf

# Mounts made from here on vanish with the namespace, whatever way the test ends.
if [[ -z ${TCPSTATESD_PRIVATE_MOUNTS:-} ]]; then
    TCPSTATESD_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private "$0" "$@"
fi

source_dir=$(realpath "$1")
deb_dir=$(realpath -m "$2")
work=$(realpath -m "$3")
rm -rf "$work"
mkdir -p "$work"

# --- Lint -----------------------------------------------------------------------------------

find_built_deb "$deb_dir"
version=$(dpkg-deb -f "$deb" Version)
log "built $(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"

log "lintian"
# Every tag, pedantic and experimental ones too, fails the test; tags accepted on purpose are
# overridden in packaging/debian/tcpstatesd.lintian-overrides and explained in
# docs/operations.md.
lintian --display-info --display-experimental --pedantic \
    --fail-on error,warning,info,pedantic,experimental "$deb_dir"/*.changes ||
    fail "lintian reports the tags above"
log "lintian: no tags"

# --- The clean root, cached -----------------------------------------------------------------

# shellcheck source-path=SCRIPTDIR source=../support/container_root.sh
source "$(dirname "$(realpath "$0")")/../support/container_root.sh"
# systemd: the root is booted to see the maintainer scripts start, restart and stop the unit.
clean_root=$(container_root packaging man-db,systemd,systemd-sysv,dbus)

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
# /var/tmp: the booted container mounts a tmpfs on /tmp.
cp "$deb" "$root/var/tmp/"
in_root apt-get update -qq >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update failed"; }
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "/var/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
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
check_same "$source_dir/systemd/tcpstatesd.socket" /lib/systemd/system/tcpstatesd.socket 644
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
[[ ! -e $root/etc/systemd/system/sockets.target.wants/tcpstatesd.socket ]] ||
    fail "tcpstatesd.socket is enabled; the package must install it disabled"
log "tcpstatesd.socket installed, not enabled"

page=$(in_root man -w tcpstatesd) || fail "man -w tcpstatesd finds no page"
[[ $page == /usr/share/man/man8/tcpstatesd.8.gz ]] || fail "man -w tcpstatesd: $page"
in_root env MANWIDTH=80 man tcpstatesd 2>&1 | grep -q 'check-config' ||
    fail "man tcpstatesd does not render a page describing --check-config"
log "man -w tcpstatesd: $page"

# An administrator's change to the conffile survives a reinstall of the package.
echo "# changed by the administrator" >>"$root/etc/tcpstatesd/tcpstatesd.yaml"
in_root dpkg -i "/var/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 || fail "reinstalling failed"
grep -q '^# changed by the administrator$' "$root/etc/tcpstatesd/tcpstatesd.yaml" ||
    fail "reinstalling the package replaced the changed conffile"
log "a changed conffile is kept on reinstall"

# --- Under systemd: start at boot, restart on upgrade, reload, stop on removal --------------

trap container_poweroff EXIT

rm "$root/usr/sbin/policy-rc.d"
log "booting the root with systemd-nspawn"
container_boot "$root" "$work/nspawn.log"

prop() { in_container systemctl show -P "$1" tcpstatesd.service; }
wait_active() {  # wait until the unit is active with a main pid other than $1
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(prop ActiveState) == active && $(prop MainPID) != 0 && $(prop MainPID) != "$1" ]] && return
        sleep 0.1
    done
    fail "tcpstatesd.service is $(prop ActiveState) (main pid $(prop MainPID)), want active with a new pid:
$(in_container journalctl -u tcpstatesd.service -o cat --no-pager | tail -n 8)"
}
wait_active 0
first_pid=$(prop MainPID)
log "the enabled unit started at boot, main pid $first_pid, configuration from the package"

in_container dpkg -i "/var/tmp/$(basename "$deb")" >>"$work/apt.log" 2>&1 || fail "dpkg -i in the container failed"
wait_active "$first_pid"
log "installing the package again restarted the daemon: main pid $first_pid -> $(prop MainPID)"
pid=$(prop MainPID)
timeout 60 nsenter -t "$container_leader" -a systemctl reload tcpstatesd.service || fail "systemctl reload failed"
[[ $(prop ActiveState) == active && $(prop MainPID) == "$pid" ]] || fail "not active with pid $pid after reload"
log "systemctl reload: still active, same pid (ExecReload's /bin/kill from procps)"

# Socket activation as docs/operations.md describes it: the service takes the socket
# (--web.systemd-socket), systemd listens; the first scrape starts the service.
in_container systemctl stop tcpstatesd.service
mkdir -p "$root/etc/systemd/system/tcpstatesd.service.d"
printf '[Service]\nExecStart=\nExecStart=/usr/sbin/tcpstatesd --config /etc/tcpstatesd/tcpstatesd.yaml --web.systemd-socket\n' \
    >"$root/etc/systemd/system/tcpstatesd.service.d/socket.conf"
in_container systemctl daemon-reload
in_container systemctl start tcpstatesd.socket || fail "systemctl start tcpstatesd.socket failed"
[[ $(prop ActiveState) == inactive ]] || fail "the service is $(prop ActiveState) before any connection"
# The host's curl in the container's network namespace (the root has no curl).
metrics=$(timeout 60 nsenter -t "$container_leader" -n curl -sS --max-time 30 http://127.0.0.1:9977/metrics) ||
    fail "no answer on the socket's port 9977: $(in_container journalctl -u tcpstatesd.service -o cat --no-pager | tail -n 8)"
grep -q '^tcpstatesd_build_info{' <<<"$metrics" || fail "the scrape through the socket has no tcpstatesd_build_info"
[[ $(prop ActiveState) == active ]] || fail "after the scrape the service is $(prop ActiveState)"
in_container journalctl -u tcpstatesd.service -o cat --no-pager | grep -q 'listening on "systemd socket' ||
    fail "the service does not serve on the systemd socket"
log "tcpstatesd.socket: the first scrape started the service ($(wc -l <<<"$metrics") lines of metrics)"
in_container systemctl stop tcpstatesd.socket tcpstatesd.service
rm -r "$root/etc/systemd/system/tcpstatesd.service.d"
in_container systemctl daemon-reload

# --- Remove and purge -----------------------------------------------------------------------

files=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\.||' | grep -v '/$')
in_container dpkg --remove tcpstatesd >>"$work/apt.log" 2>&1 || fail "dpkg --remove failed"
[[ $(prop ActiveState) == inactive ]] || fail "after dpkg --remove the unit is $(prop ActiveState)"
[[ $(in_root dpkg-query -W -f='${db:Status-Abbrev}' tcpstatesd) == "rc " ]] ||
    fail "after remove: status '$(in_root dpkg-query -W -f='${db:Status-Abbrev}' tcpstatesd)', want rc"
[[ ! -e $root/usr/sbin/tcpstatesd ]] || fail "/usr/sbin/tcpstatesd left after remove"
[[ -f $root/etc/tcpstatesd/tcpstatesd.yaml ]] || fail "remove deleted the conffile (only purge may)"
log "removed: the daemon stopped, the binary is gone, the conffile stays"

in_container dpkg --purge tcpstatesd >>"$work/apt.log" 2>&1 || fail "dpkg --purge failed"
container_poweroff
in_root dpkg-query -W tcpstatesd >/dev/null 2>&1 && fail "tcpstatesd still known to dpkg after purge"
left=""
for file in $files /etc/tcpstatesd /usr/share/tcpstatesd /etc/systemd/system/multi-user.target.wants/tcpstatesd.service; do
    if [[ -e $root$file || -L $root$file ]]; then left+=" $file"; fi
done
[[ -z $left ]] || fail "left after purge:$left"
log "purged: none of the package's $(wc -w <<<"$files") files, /etc/tcpstatesd or the enable link is left"
log "PASS"

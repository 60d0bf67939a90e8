# shellcheck shell=bash
# Sourced by the tests that need a real systemd (PID 1 on the build machines is not systemd):
# a minimal Debian root built with debootstrap and cached, booted with systemd-nspawn and
# driven with nsenter (DEVELOPERS.md, "The unit under a real systemd"). The caller
# has sourced test_lib.sh (log, fail), runs as root and has checked that debootstrap, flock,
# systemd-nspawn and nsenter are installed.

# shellcheck source-path=SCRIPTDIR source=../../packaging/container/debian_root.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../packaging/container/debian_root.sh"

container_cache=/var/cache/tcpstatesd-test
container_machine="tcpstatesd-test-$$"
container_nspawn_pid=""
container_leader=""  # the container's systemd, the target of nsenter
container_cgroups=()  # the container's own cgroups, see container_own_cgroups
# The file that marks a cached root complete, in the root itself.
container_root_marker=.complete

# Prints the path of a root (debootstrap --variant=minbase, packaging/container/debian_root.sh)
# holding PACKAGES (comma separated, may be empty), built on first use and cached under
# $container_cache/NAME/. Each test has its own NAME, so that its stale roots (other package
# sets) can go without touching another test's. Callers never write into the root: they
# boot an overlay of it, or copy it.
container_root() {  # NAME PACKAGES
    local dir="$container_cache/$1" packages=$2 root
    root="$dir/$debian_codename-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
    mkdir -p "$dir"
    (
        flock 9
        if [[ ! -f $root/$container_root_marker ]]; then
            log "building the container root $root" >&2
            rm -rf "$root.partial"
            debian_root "$root.partial" "$dir/debootstrap.log" "$packages" ||
                fail "could not build the container root $root (the line above says why)"
            touch "$root.partial/$container_root_marker"
            mv "$root.partial" "$root"
            find "$dir" -mindepth 1 -maxdepth 1 -type d -name "$debian_codename-*" \
                ! -path "$root" -exec rm -rf {} +
        fi
    ) 9>"$dir/lock" || exit  # called in $(...), where set -e does not apply
    printf '%s\n' "$root"
}

# The container's init is the descendant of systemd-nspawn named systemd (nspawn forks
# helpers in between).
container_init() {  # PID
    local child
    [[ $(cat "/proc/$1/comm" 2>/dev/null) == systemd ]] && { echo "$1"; return; }
    # shellcheck disable=SC2013 # a /proc list of pids, words on one line
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do container_init "$child"; done
}

# Makes the cgroup $container_machine below this process's own in each hierarchy nspawn uses
# (cgroup2, and in the hybrid layout also the name=systemd one) and lists them in
# container_cgroups. With --keep-unit nspawn puts the container into "payload" below the
# cgroup it runs in: two containers started from one cgroup (here both from the root, where
# every process runs) would share it, the cgroup namespace and the units' cgroups with it, and
# each systemd would stop the other's processes with its own units.
container_own_cgroups() {
    local mount fstype own
    # mountinfo: "ID PARENT DEV ROOT MOUNT_POINT OPTIONS... - FSTYPE SOURCE SUPER_OPTIONS"
    while read -r mount fstype; do
        if [[ $fstype == cgroup2 ]]; then
            own=$(sed -n 's/^0:://p' /proc/self/cgroup)
        else
            own=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
        fi
        mkdir "$mount${own%/}/$container_machine" ||
            fail "cannot make the container's cgroup $mount${own%/}/$container_machine"
        container_cgroups+=("$mount${own%/}/$container_machine")
    done < <(awk '{ for (i = 7; $i != "-"; i++); fstype = $(i + 1) }
        fstype == "cgroup2" && !v2++ { print $5, fstype }
        fstype == "cgroup" && ("," $(i + 3) ",") ~ /,name=systemd,/ && !v1++ { print $5, fstype }' \
        /proc/self/mountinfo)
}

# Boots ROOT under systemd-nspawn, detached, its console in CONSOLE_LOG, and returns once
# its systemd has finished booting. The caller's EXIT trap calls container_poweroff.
container_boot() {  # ROOT CONSOLE_LOG [NSPAWN OPTION...]
    local root=$1 console=$2 i state="" cgroup
    shift 2
    # nspawn's default seccomp filter and capability set refuse BPF; these two options add
    # just what the daemon needs. /sys/kernel/btf is visible in the container's read-only
    # /sys as it is.
    container_own_cgroups
    (
        for cgroup in "${container_cgroups[@]}"; do echo "$BASHPID" >"$cgroup/cgroup.procs"; done
        exec setsid systemd-nspawn --quiet -D "$root" -M "$container_machine" -b --private-network \
            --register=no --keep-unit --capability=CAP_BPF,CAP_PERFMON \
            --system-call-filter="bpf perf_event_open" "$@"
    ) </dev/null >"$console" 2>&1 &
    container_nspawn_pid=$!
    for ((i = 0; i < 300; i++)); do
        container_leader=$(container_init "$container_nspawn_pid" | head -n1)
        [[ -n $container_leader ]] && break
        kill -0 "$container_nspawn_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -n $container_leader ]]; then
        # `--wait` waits through "starting"; before systemd listens it answers "offline".
        for ((i = 0; i < 120; i++)); do
            state=$(timeout 120 nsenter -t "$container_leader" -a systemctl is-system-running \
                --wait 2>/dev/null || true)
            [[ $state == running || $state == degraded ]] && break
            sleep 0.5
        done
    fi
    if [[ $state != running && $state != degraded ]]; then
        echo "--- container console (last 40 lines) ---" >&2
        tail -n 40 "$console" >&2
        fail "the container did not boot (init pid '$container_leader', state '$state')"
    fi
    log "container up ($state), init pid $container_leader"
}

in_container() { nsenter -t "$container_leader" -a "$@"; }

# Powers the container off (killing it after 30 s); safe to call when none is running.
container_poweroff() {
    local i cgroup
    if [[ -n $container_leader ]] && kill -0 "$container_leader" 2>/dev/null; then
        timeout 10 nsenter -t "$container_leader" -a systemctl poweroff >/dev/null 2>&1 || true
    fi
    if [[ -n $container_nspawn_pid ]]; then
        for ((i = 0; i < 150; i++)); do
            kill -0 "$container_nspawn_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$container_nspawn_pid" 2>/dev/null; then
            echo "container did not power off; killing it" >&2
            kill -KILL -- "-$container_nspawn_pid" 2>/dev/null || true
        fi
    fi
    # nspawn leaves this empty directory behind when the container was killed.
    rmdir "/run/systemd/nspawn/propagate/$container_machine" 2>/dev/null || true
    # The container's cgroups, innermost first (one still holding a process stays).
    for cgroup in "${container_cgroups[@]}"; do
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    container_cgroups=()
    container_leader="" container_nspawn_pid=""
}

#!/usr/bin/env bash
# The container image (packaging/container/): built from the Debian package with
# build-image.sh, then run with podman exactly as docs/operations.md ("Container") says — the
# run line is read from there: host network, only CAP_BPF and CAP_PERFMON, the seccomp profile
# from seccomp-profile.py — with a configuration directory mounted and a free loopback port.
# Checked from the host:
#   - the image: entrypoint, command, version label, size, the package's files in it and the
#     trimmed ones not;
#   - every thread of the daemon: bounding set CAP_BPF + CAP_PERFMON, no capability
#     effective, permitted, inheritable or ambient (dropped after start), no_new_privs, seccomp;
#   - loopback connections made on the host to a filtered port: their transitions counted
#     exactly on /metrics (10 connections = 52 transitions, as tests/e2e/capabilities_test.py);
#   - SIGHUP (podman kill --signal HUP) re-reads a configuration replaced in the mounted
#     directory: 3 connections to the new port = 17 more, none of the old port's;
#   - podman stop: exit code 0, nothing logged at warning or error;
#   - the same run line without the seccomp profile fails with EPERM, the reason the docs give
#     for the profile (podman's default one refuses bpf() without CAP_SYS_ADMIN).
#
# Usage: container_image.sh SOURCE_DIR DEB_DIR WORK_DIR        (as root)
#
# DEB_DIR holds the package built by the fixture test "packaging: build the .deb". The
# image's base root (debootstrap --variant=minbase) is cached by tests/support/container_root.sh
# under /var/cache/tcpstatesd-test/container-image/. The containers and the image are removed
# on every exit path.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../support/test_lib.sh
source "$(dirname "$(realpath "$0")")/../support/test_lib.sh"
expect_arguments 3 "SOURCE_DIR DEB_DIR WORK_DIR" "$@"

[[ $(id -u) -eq 0 ]] || cannot_run "needs root (debootstrap, chroot, podman)"
require_tools podman debootstrap flock python3 curl
require_btf

source_dir=$(realpath "$1")
deb_dir=$(realpath -m "$2")
work=$(realpath -m "$3")
find_built_deb "$deb_dir"
version=$(dpkg-deb -f "$deb" Version)
rm -rf "$work"
mkdir -p "$work/config"

name="tcpstatesd-test-$$"
image=""
cleanup() {
    podman rm --force --ignore "$name" >/dev/null 2>&1 || true
    if [[ -n $image ]]; then podman image rm --force "$image" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# The e2e tests' helpers (tests/e2e/e2e_support.py): free ports, loopback connections.
e2e() {  # PYTHON_STATEMENT [ARG...] (sys.argv[2:]), with e2e_support imported as e
    python3 -c "import sys; sys.path.insert(0, sys.argv[1]); import e2e_support as e; $1" \
        "$source_dir/tests/e2e" "${@:2}"
}

# --- The run line, from the docs ------------------------------------------------------------

docs="$source_dir/docs/operations.md"
documented_prefix="podman run -d --name tcpstatesd"
# The first line starting with the prefix, joined with its continuation lines.
run_line=$(awk -v prefix="$documented_prefix" '
    index($0, prefix) == 1 { found = 1 }
    found { sub(/^ +/, ""); line = line (line == "" ? "" : " ") $0
            if (!sub(/ *\\$/, "", line)) { print line; exit } }' "$docs")
read -ra run_words <<<"$run_line"
[[ ${#run_words[@]} -gt 5 ]] || fail "no line starting with '$documented_prefix' in $docs"
documented_image=${run_words[-1]}
[[ $documented_image == localhost/tcpstatesd:* ]] ||
    fail "the run line in $docs does not end with the image localhost/tcpstatesd:VERSION: $run_line"
# What comes between the prefix and the image, the seccomp profile taken from this test's
# work directory instead of /etc/containers.
run_options=("${run_words[@]:5:${#run_words[@]}-6}")
run_options=("${run_options[@]/#seccomp=*/seccomp=$work/tcpstatesd-seccomp.json}")
log "documented: $run_line"

# The same without the seccomp profile.
default_seccomp_options=()
for ((i = 0; i < ${#run_options[@]}; i++)); do
    if [[ ${run_options[i]} == --security-opt && ${run_options[i + 1]:-} == seccomp=* ]]; then
        i=$((i + 1))
    else
        default_seccomp_options+=("${run_options[i]}")
    fi
done
[[ ${#default_seccomp_options[@]} -lt ${#run_options[@]} ]] ||
    fail "the run line in $docs has no '--security-opt seccomp=...'"

# Two properties of the test machines, not of the image, need options the documented line
# does not have (a fresh Debian 12 host needs neither):
machine_options=()
# - cgroup v2 mounted beside the v1 hierarchies with a controller in it (the hybrid layout;
#   docs/operations.md, "Container"): crun 1.8, podman's default runtime, refuses that
#   ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"); runc runs it.
if [[ -n $(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null) ]]; then
    require_tools runc
    machine_options+=(--runtime runc)
fi
# - root lacks CAP_SYS_RESOURCE and so cannot raise a hard resource limit, while podman, run
#   by root, gives a container RLIMIT_NOFILE and RLIMIT_NPROC 1048576 unless told otherwise
#   ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"). The container gets this shell's
#   open-file limit, and an NPROC that podman can set (NPROC does not bind root anyway).
if ! (ulimit -Hn 1048576) 2>/dev/null; then
    machine_options+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
fi
[[ ${#machine_options[@]} -eq 0 ]] || log "options this machine needs: ${machine_options[*]}"

# --- Build ----------------------------------------------------------------------------------

# shellcheck source-path=SCRIPTDIR source=../support/container_root.sh
source "$(dirname "$(realpath "$0")")/../support/container_root.sh"
base=$(container_root container-image "")
# build-image.sh copies its base root: it gets a hard-linked view of the cached one without
# the cache's marker (cheap; the cache itself is never written).
cp -al "$base" "$work/base-root"
rm "$work/base-root/$container_root_marker"

log "packaging/container/build-image.sh --base-root $base $(basename "$deb")"
started=$SECONDS
image=$("$source_dir/packaging/container/build-image.sh" --base-root "$work/base-root" "$deb" \
    "localhost/$name" | tail -n 1) || fail "the image build failed"
rm -rf "$work/base-root"
[[ $image == "localhost/$name:$version" ]] || fail "build-image.sh printed '$image', want localhost/$name:$version"
inspect() { podman image inspect --format "$1" "$image"; }
size=$(inspect '{{.Size}}')
log "built $image in $((SECONDS - started)) s, $((size / 1000000)) MB"

[[ $(inspect '{{json .Config.Entrypoint}}') == '["/usr/sbin/tcpstatesd"]' ]] ||
    fail "entrypoint $(inspect '{{json .Config.Entrypoint}}'), want [\"/usr/sbin/tcpstatesd\"]"
[[ $(inspect '{{json .Config.Cmd}}') == '["--config","/etc/tcpstatesd/tcpstatesd.yaml"]' ]] ||
    fail "command $(inspect '{{json .Config.Cmd}}'), want the packaged configuration"
[[ $(inspect '{{index .Labels "org.opencontainers.image.version"}}') == "$version" ]] ||
    fail "label org.opencontainers.image.version is '$(inspect '{{index .Labels "org.opencontainers.image.version"}}')', want $version"
# The root with the package's libraries is about 82 MB; the bound catches trimming that stopped.
((size < 100000000)) || fail "the image is $size bytes, over 100 MB: is build-image.sh still trimming it?"

files=$(podman image mount "$image") || fail "podman image mount failed"
missing=""
for file in /usr/sbin/tcpstatesd /etc/tcpstatesd/tcpstatesd.yaml /usr/share/doc/tcpstatesd/copyright \
    /usr/share/tcpstatesd/grafana/tcpstatesd.json; do
    [[ -f $files$file ]] || missing+=" $file"
done
cmp -s "$source_dir/config/tcpstatesd.yaml" "$files/etc/tcpstatesd/tcpstatesd.yaml" ||
    missing+=" (the packaged configuration differs from config/tcpstatesd.yaml)"
# (apt-get clean keeps its empty lock file.)
left=$(cd "$files" && find var/lib/apt/lists usr/share/man var/cache/apt -type f ! -name lock -print -quit)
[[ ! -e $files/etc/resolv.conf ]] || left+=" etc/resolv.conf"
podman image unmount "$image" >/dev/null
[[ -z $missing ]] || fail "missing in the image:$missing"
[[ -z $left ]] || fail "build-image.sh left in the image: $left"
log "image: entrypoint, command, version label, package files in place, apt lists and man pages trimmed"

# --- Run as documented ----------------------------------------------------------------------

"$source_dir/packaging/container/seccomp-profile.py" >"$work/tcpstatesd-seccomp.json" ||
    fail "seccomp-profile.py failed"
# Three ports reserved against the other tests (free_port) for as long as this test runs: the
# process that reserved them holds them until its stdin, a pipe from this shell, closes.
coproc reserved_ports { e2e 'print(e.free_port(), e.free_port(), e.free_port(), flush=True); sys.stdin.read()'; }
read -r port port_a port_b <&"${reserved_ports[0]}"
[[ -n $port_b ]] || fail "no ports reserved"
target="127.0.0.1:$port"
printf 'filters:\n  local_ports: [%s]\n' "$port_a" >"$work/config/tcpstatesd.yaml"

scrape() { curl -sf --max-time 5 "http://$target/metrics"; }
metric() {  # NAME: the value of an unlabelled sample
    scrape | awk -v name="$1" '$1 == name { print $2 }'
}
transitions() { scrape | awk '/^tcpstates_transitions_total\{/ { sum += $NF } END { print sum + 0 }'; }
wait_until() {  # WHAT COMMAND...: up to 30 s for COMMAND to succeed
    local what=$1 i
    shift
    for ((i = 0; i < 150; i++)); do
        if "$@" 2>/dev/null; then return; fi
        if [[ $(podman inspect --format '{{.State.Running}}' "$name") != true ]]; then
            podman logs "$name" >&2
            fail "the container stopped while waiting for $what"
        fi
        sleep 0.2
    done
    podman logs "$name" >&2
    fail "timed out after 30 s waiting for $what"
}
transitions_are() { [[ $(transitions) == "$1" ]]; }

log "podman run -d --name $name ${machine_options[*]} ${run_options[*]} -v $work/config:/etc/tcpstatesd:ro $image --config /etc/tcpstatesd/tcpstatesd.yaml --web.listen-address $target"
podman run -d --name "$name" "${machine_options[@]}" "${run_options[@]}" \
    -v "$work/config:/etc/tcpstatesd:ro" "$image" \
    --config /etc/tcpstatesd/tcpstatesd.yaml --web.listen-address "$target" >/dev/null ||
    fail "podman run failed"
wait_until "/-/ready" curl -sf --max-time 2 -o /dev/null "http://$target/-/ready"
log "ready on $target (host network)"

caps=$(podman inspect --format '{{.EffectiveCaps}}' "$name")
[[ $caps == "[CAP_BPF CAP_PERFMON]" ]] || fail "podman gave the container $caps, want [CAP_BPF CAP_PERFMON]"
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
want="CapInh: 0000000000000000 CapPrm: 0000000000000000 CapEff: 0000000000000000 CapBnd: 000000c000000000 CapAmb: 0000000000000000 NoNewPrivs: 1 Seccomp: 2"
threads=0
for status in /proc/"$pid"/task/*/status; do
    got=$(awk '/^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):/ { printf "%s%s %s", sep, $1, $2; sep = " " }' "$status")
    [[ $got == "$want" ]] || fail "$status: $got; want $want"
    threads=$((threads + 1))
done
log "podman: $caps; each of the daemon's $threads threads: $want"

e2e 'e.connections(int(sys.argv[2]), port=int(sys.argv[3]))' 10 "$port_a"
wait_until "52 transitions of 10 connections to port $port_a" transitions_are 52
log "10 loopback connections on the host to port $port_a: 52 transitions counted"

# A reload with the filter on port B. The file is replaced (a new inode), as editors do: the
# directory mount shows the new file.
printf 'filters:\n  local_ports: [%s]\n' "$port_b" >"$work/config/tcpstatesd.yaml.new"
mv "$work/config/tcpstatesd.yaml.new" "$work/config/tcpstatesd.yaml"
reloaded_at=$(metric tcpstatesd_config_last_reload_success_timestamp_seconds)
podman kill --signal HUP "$name" >/dev/null
reload_done() { [[ $(metric tcpstatesd_config_last_reload_success_timestamp_seconds) != "$reloaded_at" ]]; }
wait_until "the reload" reload_done
[[ $(metric tcpstatesd_config_last_reload_successful) == 1 ]] ||
    { podman logs "$name" >&2; fail "the reload failed"; }
e2e 'e.connections(int(sys.argv[2]), port=int(sys.argv[3]))' 3 "$port_a"
e2e 'e.connections(int(sys.argv[2]), port=int(sys.argv[3]))' 3 "$port_b"
wait_until "17 more transitions, on port $port_b only" transitions_are $((52 + 17))
log "SIGHUP: filter moved to port $port_b; 3 connections to each port: 17 more transitions"

started=$SECONDS
podman stop --time 10 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
output=$(podman logs "$name" 2>&1)
[[ $code == 0 ]] || { echo "$output" >&2; fail "the daemon exited with $code on podman stop"; }
if grep -Eq '^[^ ]+ (warning|error|critical) ' <<<"$output"; then
    echo "$output" >&2
    fail "the daemon logged a warning or an error"
fi
grep -q 'capabilities dropped' <<<"$output" || fail "no 'capabilities dropped' in the log"
podman rm "$name" >/dev/null
log "podman stop: exit code 0 after $((SECONDS - started)) s, no warning or error logged"

# --- Without the seccomp profile ------------------------------------------------------------

code=0
output=$(timeout 30 podman run --rm --name "$name" "${machine_options[@]}" \
    "${default_seccomp_options[@]}" "$image" --web.listen-address "$target" 2>&1) || code=$?
# 124: still running after 30 s (timeout).
[[ $code != 0 && $code != 124 ]] ||
    fail "the daemon ran under podman's default seccomp profile: docs/operations.md says it cannot (update it, and drop the profile if podman now allows bpf with CAP_BPF)"
grep -q 'loading the BPF program (tp_btf/inet_sock_set_state): Operation not permitted (the process holds CAP_BPF and CAP_PERFMON, so a seccomp filter' <<<"$output" ||
    fail "under podman's default seccomp profile, expected EPERM from bpf() and the seccomp hint; got: $output"
log "without the profile: $(grep -m1 'Operation not permitted' <<<"$output")"
log "PASS"

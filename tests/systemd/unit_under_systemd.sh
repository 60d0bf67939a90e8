#!/usr/bin/env bash
# Runs systemd/tcpstatesd.service under a real systemd: PID 1 on the build machines is not
# systemd, so this boots one in a container (debootstrap root + systemd-nspawn; DEVELOPERS.md,
# "The unit under a real systemd"), then starts, scrapes, reloads and stops the unit with
# systemctl and checks the journal and that no BPF program of ours stays attached. Between
# scrape and reload, two transient units connect to the daemon: their sockets, and the
# daemon's accepted ones, must be counted exactly, each under its unit's name in the cgroup
# label (client-a.service, client-b.service, tcpstatesd.service) with the service port.
#
# Usage: unit_under_systemd.sh BINARY UNIT CONFIG        (as root)
#
# The container root (tests/support/container_root.sh) is built once per set of runtime
# packages and cached under /var/cache/tcpstatesd-test/systemd/ (about 35 s and 250 MB from
# the configured Debian mirror); the booted container writes only into a tmpfs overlay, so
# the cache stays pristine.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../support/test_lib.sh
source "$(dirname "$(realpath "$0")")/../support/test_lib.sh"
expect_arguments 3 "BINARY UNIT CONFIG" "$@"
binary=$(realpath "$1") unit=$(realpath "$2") config=$(realpath "$3")

[[ $(id -u) -eq 0 ]] || cannot_run "needs root (debootstrap, systemd-nspawn, bpftool)"
require_tools debootstrap systemd-nspawn nsenter bpftool curl flock ss
require_btf
for file in "$binary" "$unit" "$config"; do [[ -f $file ]] || fail "$file does not exist"; done

# --- The container root, cached, booted ------------------------------------------------------

# shellcheck source-path=SCRIPTDIR source=../support/container_root.sh
source "$(dirname "$(realpath "$0")")/../support/container_root.sh"

# The Debian packages that hold the binary's shared libraries, so that it runs in the root.
# One dpkg query for all of them, each under its path and its real path (dpkg knows one of
# the two, /lib being a link to /usr/lib): 1.4 s here, where up to two queries per library
# took 17 s, minutes on a busy machine.
runtime_packages() {
    local libs lib owners
    libs=$(ldd "$binary" | awk '/=> \//{print $3}')
    owners=$(for lib in $libs; do printf '%s\n' "$lib" "$(realpath "$lib")"; done | sort -u |
        xargs dpkg -S 2>/dev/null || true)
    for lib in $libs; do
        awk -v path="$lib" -v real="$(realpath "$lib")" '$NF == path || $NF == real {found = 1}
            END {exit !found}' <<<"$owners" || fail "no Debian package holds $lib (needed by $binary)"
    done
    cut -d: -f1 <<<"$owners" | sort -u
}

# procps: ExecReload's /bin/kill (minbase leaves it out; the Debian package depends on it).
packages=$( (printf '%s\n' systemd systemd-sysv dbus procps; runtime_packages) | sort -u | paste -sd,)
root=$(container_root systemd "$packages")
work=$(mktemp -d)

teardown() {
    local status=$?
    if [[ $status -ne 0 && -n $container_leader ]] && kill -0 "$container_leader" 2>/dev/null; then
        echo "--- journalctl -u tcpstatesd (in the container) ---" >&2
        timeout 10 nsenter -t "$container_leader" -a journalctl -u tcpstatesd.service --no-pager -o short-monotonic >&2 || true
    fi
    container_poweroff
    rm -rf "$work"
    exit "$status"
}
trap teardown EXIT

mkdir -p "$work/dropin" "$work/extra"
# An unknown key on line 2: the start must fail, saying so in the unit's journal.
printf 'web:\n  listen_adress: ":9977"\n' >"$work/extra/broken.yaml"
# A short watchdog period, so that a ping is seen within seconds.
printf '[Service]\nWatchdogSec=4s\n' >"$work/dropin/watchdog.conf"

log "booting $container_machine"
# --volatile=overlay: the container writes into a tmpfs over the cached root.
container_boot "$root" "$work/nspawn.log" --volatile=overlay \
    --bind-ro="$binary:/usr/sbin/tcpstatesd" \
    --bind-ro="$unit:/etc/systemd/system/tcpstatesd.service" \
    --bind-ro="$work/dropin:/etc/systemd/system/tcpstatesd.service.d" \
    --bind-ro="$work/extra:/etc/tcpstatesd/extra" \
    --bind-ro="$config:/etc/tcpstatesd/tcpstatesd.yaml"

prop() { in_container systemctl show -P "$1" tcpstatesd.service; }
recent_log() { in_container journalctl -u tcpstatesd.service -o cat --no-pager | tail -n 8; }
# The ids of the BPF programs named tcpstates_* that user UID loaded with ids above ABOVE.
# Programs are global, so the container's show up on the host: the unit's dynamic uid tells
# them from those of tcpstatesd processes on the host (which run as root), ids above the
# highest before the start (ids only grow) from those of the same unit in another container
# (whose dynamic uid is the same, a hash of the unit's name).
prog_ids() {  # UID ABOVE
    bpftool prog show --json | python3 -c '
import json, sys
uid, above = int(sys.argv[1]), int(sys.argv[2])
print(" ".join(str(p["id"]) for p in json.load(sys.stdin)
               if p.get("name", "").startswith("tcpstates_") and p.get("uid") == uid
               and p["id"] > above))' "$1" "$2"
}
# Which of the program IDS are still loaded.
loaded_prog_ids() {  # IDS...
    bpftool prog show --json | python3 -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if str(p["id"]) in sys.argv[1:]))' "$@"
}

# --- Start ------------------------------------------------------------------------------------

highest_prog_id=$(bpftool prog show --json |
    python3 -c 'import json, sys; print(max((p["id"] for p in json.load(sys.stdin)), default=0))')
log "systemctl start tcpstatesd"
# For Type=notify this returns once the daemon has sent READY=1.
timeout 90 nsenter -t "$container_leader" -a systemctl start tcpstatesd.service ||
    fail "systemctl start failed:
$(recent_log)"
[[ $(prop ActiveState) == active ]] || fail "not active after start: $(prop ActiveState)
$(recent_log)"
main_pid=$(prop MainPID)
[[ $main_pid -ne 0 ]] || fail "no main process after start:
$(recent_log)"
log "active, main pid $main_pid (in the container)"

# The hardening as the kernel sees it: a dynamic non-root user, started with CAP_BPF +
# CAP_PERFMON, holding none once the program is attached (docs/operations.md, "Privileges");
# the bounding set stays the unit's (dropping from it would need CAP_SETPCAP).
status_file=$(in_container cat "/proc/$main_pid/status")
uid=$(awk '/^Uid:/{print $3}' <<<"$status_file")
caps=$(awk '/^(CapEff|CapPrm|CapAmb|CapBnd|NoNewPrivs):/{printf "%s%s ", $1, $2}' <<<"$status_file")
[[ $uid -ne 0 ]] || fail "the daemon runs as root"
[[ $caps == "CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:000000c000000000 CapAmb:0000000000000000 NoNewPrivs:1 " ]] ||
    fail "capabilities $caps, want none but the unit's bounding set CAP_BPF+CAP_PERFMON, and no_new_privs"
log "runs as uid $uid with $caps"

ours=$(prog_ids "$uid" "$highest_prog_id")  # attached before READY=1
[[ -n $ours ]] || fail "no tcpstates_ BPF program loaded while the unit is active"
log "BPF program ids of the unit: $ours"

# --- Scrape -----------------------------------------------------------------------------------
# The host's curl in the container's network namespace. The first scrape's own connection
# makes transitions; a later scrape must count them.
metric=""
for ((i = 0; i < 100; i++)); do
    metrics=$(nsenter -t "$container_leader" -n curl -sf --max-time 5 http://127.0.0.1:9977/metrics || true)
    metric=$(grep -E '^tcpstates_transitions_total\{.*to_state="ESTABLISHED".*\} [1-9]' <<<"$metrics" | head -n1 || true)
    [[ -n $metric ]] && break
    sleep 0.1
done
[[ -n $metric ]] || fail "no ESTABLISHED transition counted on /metrics; last scrape:
$(head -n 40 <<<"$metrics")"
log "scraped: $metric"
# The sandbox must leave the process metrics whole (ProcSubset=pid would hide /proc/stat).
for name in process_cpu_seconds_total process_resident_memory_bytes process_start_time_seconds \
    process_open_fds process_max_fds tcpstatesd_build_info; do
    grep -q "^${name}[ {]" <<<"$metrics" || fail "$name missing from /metrics under the unit"
done

# --- Owners: each socket carries its unit's name ---------------------------------------------
# The cgroup label names a socket's owner: the systemd unit of the task that connect()ed it;
# an accepted socket inherits its listener's, here the daemon's own listener, which belongs to
# tcpstatesd.service. Two transient units connect to it (bash's /dev/tcp, one HTTP/1.0 request
# each, answered 200). Type=forking: systemd-run returns once the unit's bash has made all its
# connections (and fails if one failed), while the child it leaves sleeping keeps the unit's
# cgroup until the end of the step: the daemon names a cgroup id when it reads the event, and a
# cgroup removed by then (a unit that has exited) is "unknown".
# The test's scrapes are connections too: "unknown" on the client side (the host's curl is
# outside the container's cgroup namespace), tcpstatesd.service on the daemon's. Each scrape
# below opens its connection half a second before it asks for /metrics (curl reuses it for
# its second URL), and the daemon reads the kernel's events at least every 350 ms (a 100 ms
# timer that sd-event may delay by up to 250 ms): so the sockets tcpstatesd.service accepted
# grow by exactly the clients' connections plus one per scrape.
clients=(client-a client-b)
declare -A connections=([client-a]=3 [client-b]=2)
service_port=9977
settled_scrape() {
    nsenter -t "$container_leader" -n curl -sf --max-time 5 --rate 2/s -o /dev/null \
        "http://127.0.0.1:$service_port/-/healthy" "http://127.0.0.1:$service_port/metrics"
}
# The sum of the samples of metric NAME in METRICS (a scrape) that have every label given as
# LABEL=VALUE.
metric_sum() {  # METRICS NAME [LABEL=VALUE...]
    local metrics=$1 name=$2
    shift 2
    awk -v name="$name" -v want="$*" '
        BEGIN { wanted = split(want, pairs, " ") }
        index($0, name "{") == 1 && match($0, /} [^ ]+$/) {
            labels = "," substr($0, length(name) + 2, RSTART - length(name) - 2) ","
            for (i = 1; i <= wanted; i++) {
                eq = index(pairs[i], "=")
                if (!index(labels, "," substr(pairs[i], 1, eq - 1) "=\"" substr(pairs[i], eq + 1) "\","))
                    next
            }
            sum += $NF
        }
        END { printf "%.0f\n", sum }' <<<"$metrics"
}
connects() {  # METRICS UNIT [LABEL=VALUE...]: CLOSE -> SYN_SENT of UNIT's sockets
    metric_sum "$1" tcpstates_transitions_total "cgroup=$2" from_state=CLOSE to_state=SYN_SENT "${@:3}"
}
accepts() {  # METRICS: LISTEN -> SYN_RECV of the daemon's own listener's sockets
    metric_sum "$1" tcpstates_transitions_total cgroup=tcpstatesd.service from_state=LISTEN \
        to_state=SYN_RECV "port=$service_port"
}

metrics=$(settled_scrape) || fail "scrape failed"
accepted_before=$(accepts "$metrics")
total=0 made=""
for client in "${clients[@]}"; do
    total=$((total + connections[$client])) made+="$client ${connections[$client]}, "
    # shellcheck disable=SC2016 # expanded by the unit's bash
    timeout 60 nsenter -t "$container_leader" -a systemd-run --quiet --unit="$client" \
        --property=Type=forking bash -c '
            for ((i = 1; i <= $1; i++)); do
                exec 3<>"/dev/tcp/127.0.0.1/$2"
                printf "GET /-/healthy HTTP/1.0\r\n\r\n" >&3
                IFS= read -r status <&3 || status="no answer"
                while IFS= read -r _ <&3; do :; done  # to the end: a close with unread data resets
                exec 3<&-
                [[ $status == "HTTP/1."?" 200 "* ]] || { echo "request $i: $status" >&2; exit 1; }
            done
            sleep infinity &' "$client" "${connections[$client]}" "$service_port" ||
        fail "$client.service: its ${connections[$client]} requests to port $service_port failed:
$(in_container journalctl -u "$client.service" -o cat --no-pager | tail -n 5)"
done
log "connections to port $service_port made by unit: ${made%, }"

seen="" complete=false
for ((scrapes = 1; scrapes <= 20; scrapes++)); do
    metrics=$(settled_scrape) || fail "scrape failed"
    complete=true seen=""
    for client in "${clients[@]}"; do
        count=$(connects "$metrics" "$client.service" "port=$service_port")
        seen+="$client.service connected $count times (want ${connections[$client]}), "
        [[ $count -le ${connections[$client]} ]] || fail "more connections than made: $seen"
        [[ $count -eq ${connections[$client]} ]] || complete=false
    done
    accepted=$(accepts "$metrics") want=$((accepted_before + total + scrapes))
    seen+="tcpstatesd.service accepted $accepted (want $want: $accepted_before before, $total from the clients, $scrapes from the scrapes since)"
    [[ $accepted -le $want ]] || fail "more accepted sockets than connections: $seen"
    [[ $accepted -eq $want ]] || complete=false
    $complete && break
done
$complete || fail "the units' sockets were not all counted with their names within 20 scrapes: $seen
$(grep -E '^tcpstates_transitions_total\{cgroup="(client-a|client-b|tcpstatesd)\.service"' <<<"$metrics")"
# None of the clients' connections under another port.
for client in "${clients[@]}"; do
    count=$(connects "$metrics" "$client.service")
    [[ $count -eq ${connections[$client]} ]] ||
        fail "$client.service: $count connections counted over all ports, want ${connections[$client]}, all with port=\"$service_port\""
done
# The listener's own transition, recorded at listen(): one per listening socket.
listeners=$(nsenter -t "$container_leader" -n ss -Htln "sport = :$service_port" | wc -l)
listens=$(metric_sum "$metrics" tcpstates_transitions_total cgroup=tcpstatesd.service \
    from_state=CLOSE to_state=LISTEN "port=$service_port")
[[ $listens -eq $listeners ]] ||
    fail "tcpstatesd.service: $listens CLOSE -> LISTEN counted with port $service_port, want $listeners (ss -tln)"
log "owners: $seen"
in_container systemctl stop "${clients[@]/%/.service}"

# --- Watchdog ---------------------------------------------------------------------------------
first_ping=$(prop WatchdogTimestampMonotonic)
for ((i = 0; i < 100; i++)); do
    [[ $(prop WatchdogTimestampMonotonic) != "$first_ping" ]] && break
    sleep 0.1
done
[[ $(prop WatchdogTimestampMonotonic) != "$first_ping" ]] ||
    fail "no watchdog ping within 10 s (WatchdogSec=4s)"
log "watchdog pinged"

# --- Reload -----------------------------------------------------------------------------------
reloads_before=$(in_container journalctl -u tcpstatesd -o cat _PID="$main_pid" | grep -ci reload || true)
log "systemctl reload tcpstatesd"
timeout 60 nsenter -t "$container_leader" -a systemctl reload tcpstatesd.service || fail "systemctl reload failed"
for ((i = 0; i < 100; i++)); do
    reloads=$(in_container journalctl -u tcpstatesd -o cat _PID="$main_pid" | grep -ci reload || true)
    [[ $reloads -gt $reloads_before && $(prop ActiveState) == active ]] && break
    sleep 0.1
done
[[ $(prop ActiveState) == active ]] || fail "not active after reload: $(prop ActiveState)"
[[ $(prop MainPID) == "$main_pid" ]] || fail "reload restarted the daemon (pid $(prop MainPID))"
[[ $reloads -gt $reloads_before ]] || fail "the daemon logged no reload"
log "reloaded, still active with pid $main_pid"

# --- Stop -------------------------------------------------------------------------------------

log "systemctl stop tcpstatesd"
timeout 60 nsenter -t "$container_leader" -a systemctl stop tcpstatesd.service || fail "systemctl stop failed"
[[ $(prop ActiveState) == inactive ]] || fail "after stop: $(prop ActiveState) ($(prop Result))"
[[ $(prop Result) == success ]] || fail "stopped with result $(prop Result)"

journal=$(in_container journalctl -u tcpstatesd.service -o short-monotonic --no-pager)
printf '%s\n' '--- journalctl -u tcpstatesd ---' "$journal" '---'
grep -q 'Started tcpstatesd.service' <<<"$journal" || fail "journal: no start line"
grep -q 'Stopped tcpstatesd.service' <<<"$journal" || fail "journal: no stop line"
grep -q 'Reloading tcpstatesd.service' <<<"$journal" || fail "journal: no reload line"
# The daemon's own lines, in the unit's journal with its identifier and their priority
# (info is 6).
info=$(in_container journalctl -u tcpstatesd.service -o cat SYSLOG_IDENTIFIER=tcpstatesd PRIORITY=6 | wc -l)
[[ $info -gt 0 ]] || fail "journal: no info entry from the daemon with SYSLOG_IDENTIFIER=tcpstatesd"
log "$info info lines from the daemon in the unit's journal"

# The kernel frees a program once its last reference (link, fd) is gone: wait for that.
left=""
for ((i = 0; i < 100; i++)); do
    # shellcheck disable=SC2086 # a list of ids
    left=$(loaded_prog_ids $ours)
    [[ -z $left ]] && break
    sleep 0.1
done
[[ -z $left ]] || fail "BPF programs still loaded after stop: $left"
log "no BPF program of the unit left after stop"

# --- A start that fails -----------------------------------------------------------------------
# The error must reach `systemctl status`/`journalctl -u` with error priority, although the
# process is gone by the time journald files it.
log "systemctl start with a broken configuration"
printf '[Service]\nRestart=no\nExecStart=\nExecStart=/usr/sbin/tcpstatesd --config /etc/tcpstatesd/extra/broken.yaml\n' \
    >"$work/dropin/broken.conf"
in_container systemctl daemon-reload
if timeout 60 nsenter -t "$container_leader" -a systemctl start tcpstatesd.service 2>/dev/null; then
    fail "the unit started with a broken configuration"
fi
[[ $(prop Result) == exit-code ]] || fail "broken configuration: result $(prop Result), want exit-code"
errors=$(in_container journalctl -u tcpstatesd.service -o cat -p err SYSLOG_IDENTIFIER=tcpstatesd)
grep -q 'broken\.yaml:2:3: .*listen_adress' <<<"$errors" ||
    fail "no error line naming broken.yaml:2:3 in the unit's journal; its last lines:
$(recent_log)"
log "start failed as it should: $errors"
log "PASS"

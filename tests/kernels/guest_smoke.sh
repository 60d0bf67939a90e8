#!/bin/sh
# The daemon as users run it, inside the guest: it becomes ready, counts loopback
# connections in tcpstates_transitions_total, serves them on /metrics and exits 0 on SIGTERM.
# Usage: guest_smoke.sh TCPSTATESD
daemon=$1
address=127.0.0.1:9977
connections=5

fail() {
    echo "SMOKE FAILED: $*"
    exit 1
}

# ipv4 SYN_SENT -> ESTABLISHED: one per connection this guest makes (scrapes included), summed
# over the port and cgroup labels.
established() {
    wget -q -O - "http://$address/metrics" |
        awk '/^tcpstates_transitions_total\{/ && /family="ipv4"/ && /from_state="SYN_SENT"/ &&
             /to_state="ESTABLISHED"/ { n += $NF }
             END { print n + 0 }'
}

"$daemon" --web.listen-address "$address" &
pid=$!
tries=0
until wget -q -O /dev/null "http://$address/-/ready" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"
        fail "the daemon exited with status $? before it was ready"
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || fail "not ready after 60 s"
    sleep 0.2
done
before=$(established)
echo "ready; SYN_SENT -> ESTABLISHED so far: $before"

i=0
while [ "$i" -lt "$connections" ]; do
    wget -q -O /dev/null "http://$address/-/healthy" || fail "connection $i to /-/healthy failed"
    i=$((i + 1))
done
# The programs count; a scrape reads the counts. A label value new to the daemon can wait for
# the next swap of the count tables (docs/architecture.md, TupleLabeler): wait (bounded).
tries=0
while :; do
    after=$(established)
    [ "$after" -ge $((before + connections)) ] && break
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || fail "SYN_SENT -> ESTABLISHED went from $before to $after after $connections connections"
    sleep 0.2
done
echo "after $connections connections: $after"
wget -q -O - "http://$address/metrics" | grep -E '^(tcpstates_transitions_total|tcpstatesd_events_)' | grep -v ' 0$'

kill -TERM "$pid"
wait "$pid"
status=$?
[ "$status" -eq 0 ] || fail "the daemon exited with status $status on SIGTERM"
echo "SMOKE PASSED"

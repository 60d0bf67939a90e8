#!/usr/bin/env python3
"""Overload: the real daemon with a socket table (the raw tracepoint's, for kernels without
BTF) and a ring buffer too small for the traffic.

Usage: overload_test.py TCPSTATESD_BINARY

Both parts filter on the local port of a listener of our own, so the transitions to expect
are exact: per connection the server's child socket makes LISTEN->SYN_RECV, SYN_RECV->
ESTABLISHED, ESTABLISHED->CLOSE_WAIT, CLOSE_WAIT->LAST_ACK, LAST_ACK->CLOSE (5; the client
closes first), and the listener CLOSE->LISTEN and LISTEN->CLOSE (2).

1. Socket table of 64 entries, with the kernel's BTF (allocated as used) and with
   events.btf_path given the kernel's own BTF (the raw tracepoint, preallocated): 300
   connections held open (600 sockets) for HOLD seconds, then closed. Every socket on the host
   takes room in the table, so it fills. Expected: refused sockets counted; every transition
   counted; the ESTABLISHED->CLOSE_WAIT durations either observed at >= HOLD (never from a wrong
   start) or counted as unknown start, together exactly one per connection; the daemon stays
   healthy.
2. Ring buffer of 4096 bytes (the minimum) and the daemon stopped (SIGSTOP) while 400
   connections are made; then SIGCONT. The programs count in the kernel, so nothing depends on
   the daemon running meanwhile. Expected: exactly 5 * 400 + 2 transitions counted;
   /-/healthy returns to 200. (The scale test stops the daemon for a storm of 800,000.)
"""
import resource
import signal
import time

from e2e_support import (Connections, Daemon, connections, fail, free_port, http_status, sample,
                         scratch_dir, test_arguments, wait_for)

HOLD = 2.0
TABLE = 64
HELD_CONNECTIONS = 300
BURST_CONNECTIONS = 400


def transitions(values):
    return sample(values, "tcpstates_transitions_total", family="ipv4")


def socket_table_part(binary, workdir, btf_path):
    # The server's port, chosen before the daemon starts; its listener opens later, so that
    # its CLOSE->LISTEN is seen.
    port = free_port()
    btf = f"  btf_path: {btf_path}\n" if btf_path else ""
    with Daemon(binary, f"events:\n  socket_table_size: {TABLE}\n{btf}"
                        f"filters:\n  families: [ipv4]\n  local_ports: [{port}]\n",
                workdir) as daemon:
        before = daemon.metrics()
        # The sockets the full table holds have their ESTABLISHED durations observed (and
        # checked); the others have an unknown start.
        with Connections(HELD_CONNECTIONS, port=port):
            opened = time.monotonic()
            wait_for("the held connections to be counted", lambda: sample(
                daemon.metrics(), "tcpstates_transitions_total", from_state="SYN_RECV",
                to_state="ESTABLISHED") == HELD_CONNECTIONS)
            time.sleep(max(0.0, HOLD - (time.monotonic() - opened)))
        expected = 5 * HELD_CONNECTIONS + 2
        wait_for(f"{expected} transitions counted",
                 lambda: transitions(daemon.metrics()) - transitions(before) >= expected)
        time.sleep(0.3)  # anything extra would show up now
        after = daemon.metrics()
        counted = transitions(after) - transitions(before)
        refused = (after["tcpstatesd_socket_state_failures_total"]
                   - before["tcpstatesd_socket_state_failures_total"])
        if counted != expected:
            fail(f"{counted} transitions counted, expected {expected}")
        if refused <= 0:
            fail("600 sockets in a table of 64 and no refused socket counted")
        if after["tcpstatesd_socket_table_capacity"] != TABLE:
            fail(f"socket table capacity {after['tcpstatesd_socket_table_capacity']}")

        hist = "tcpstates_state_duration_seconds_bucket"
        established = dict(family="ipv4", state="ESTABLISHED", next_state="CLOSE_WAIT")
        observed = sample(after, "tcpstates_state_duration_seconds_count", **established)
        too_short = sample(after, hist, le="1", **established)
        unknown = sample(after, "tcpstatesd_transitions_unknown_start_total", family="ipv4",
                         from_state="ESTABLISHED", to_state="CLOSE_WAIT")
        print(f"socket table {TABLE} ({'raw tracepoint' if btf_path else 'tp_btf'}), "
              f"{HELD_CONNECTIONS} connections held {HOLD} s: "
              f"{counted} transitions counted (expected {expected}), {refused:.0f} refused, "
              f"ESTABLISHED->CLOSE_WAIT observed {observed:.0f} + unknown start "
              f"{unknown:.0f}, observed below 1 s: {too_short:.0f}")
        if too_short != 0:
            fail(f"{too_short} ESTABLISHED durations below 1 s for connections held {HOLD} s: "
                 "a duration from a wrong start")
        if observed + unknown != HELD_CONNECTIONS:
            fail(f"observed {observed} + unknown start {unknown} != {HELD_CONNECTIONS}")
        if unknown == 0:
            fail("no ESTABLISHED->CLOSE_WAIT with unknown start although the table overflowed")
        if observed == 0:
            fail("no ESTABLISHED duration observed: the check against wrong starts checked nothing")
        if http_status(daemon.target, "/-/healthy") != 200:
            fail("not healthy after the socket table overflowed")
        daemon.stop()


def stopped_daemon_part(binary, workdir):
    port = free_port()
    with Daemon(binary, f"events:\n  transport: ringbuf\n  ring_buffer_bytes: 4096\n"
                        f"filters:\n  families: [ipv4]\n  local_ports: [{port}]\n",
                workdir) as daemon:
        before = daemon.metrics()
        daemon.send_signal(signal.SIGSTOP)
        try:
            connections(BURST_CONNECTIONS, port=port)
        finally:
            daemon.send_signal(signal.SIGCONT)
        expected = 5 * BURST_CONNECTIONS + 2
        wait_for(f"{expected} transitions counted",
                 lambda: transitions(daemon.metrics()) - transitions(before) >= expected)
        time.sleep(0.3)  # anything extra would show up now
        counted = transitions(daemon.metrics()) - transitions(before)
        print(f"daemon stopped during a burst of {BURST_CONNECTIONS} connections: {counted:.0f} "
              f"transitions counted (expected {expected})")
        if counted != expected:
            fail(f"{counted} transitions counted, expected {expected}")
        wait_for("/-/healthy to be 200 again",
                 lambda: http_status(daemon.target, "/-/healthy") == 200)
        if http_status(daemon.target, "/-/ready") != 200:
            fail("not ready after the burst")
        daemon.stop()


def main():
    [binary] = test_arguments(__doc__, 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    socket_table_part(binary, scratch_dir("overload"), None)
    socket_table_part(binary, scratch_dir("overload"), "/sys/kernel/btf/vmlinux")
    stopped_daemon_part(binary, scratch_dir("overload"))
    print("PASS")


if __name__ == "__main__":
    main()

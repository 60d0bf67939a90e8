#!/usr/bin/env python3
"""Swaps of the count tables that fail: counted, logged once, and nothing lost or counted twice.

The daemon swaps its count tables (docs/architecture.md) when new label tuples fill them. A swap
inserts tuples into the spare table from user space, which the kernel refuses with ENOMEM when
the daemon's memory cgroup is at its limit. Here a preloaded library (REFUSED_INSERTS, built from
tests/support/refused_inserts.c) refuses them on demand, while the kernel's programs insert as
usual: a real limit would also stall the daemon's own page faults.

Every port the test uses is in `filters.local_ports`, so that only its own listeners and
connections are counted, and in `labels.port.ports` with `max_values: 1`: the first, HOLDER,
takes the only value, each other's tuple is one of its own in the kernel's table and goes under
`other` in the metrics, within `labels.max_series` of 256, where the tuple tables hold 1024 and
a swap is wanted once 128 new tuples are added (an eighth) to those the last swap carried (the
holder's): NEW_PORTS new ports are more.

1. Every insert refused: the swaps fail, each is counted and only the first is logged; with
   inserts allowed again, a swap succeeds and its success after the failures is logged once.
2. Only the carried tuples refused (those of sockets still counted, which a swap puts in the new
   table): the swap succeeds without them, and the gauge stays exact, HELD connections to HOLDER
   counted ESTABLISHED before they are aborted and none after, with no move of the gauge lost:
   the programs add the tuple again at the sockets' next change of state.
Then every listener's LISTEN -> CLOSE transition and duration is counted once.

Usage: swap_failures_test.py TCPSTATESD_BINARY REFUSED_INSERTS
"""
import os
import socket
import struct

from e2e_support import (Daemon, connections, fail, free_port, in_own_network_namespace, sample,
                         scratch_dir, test_arguments, wait_for)

NEW_PORTS = 200
HELD = 20
SWAP_WARNING = "swapping the count tables: adding the overflow tuples"
SWAPS_AGAIN = "swapping the count tables: works again, after"


def aborted(sock):
    """Closes `sock` with a RST (SO_LINGER 0): no TIME_WAIT, which the walk would count."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def counters(daemon, holder_port):
    """What the parts check, from a scrape of `daemon`."""
    values = daemon.metrics()
    return {"swaps": values["tcpstatesd_count_table_swaps_total"],
            "failures": values["tcpstatesd_count_table_swap_failures_total"],
            "moves lost": values["tcpstatesd_socket_count_moves_lost_total"],
            "holder established": sample(values, "tcpstates_sockets", port=holder_port,
                                         state="ESTABLISHED")}


def refuse(flag, mode):
    """Makes the preloaded library refuse inserts: `mode` "all" or "carried"."""
    with open(flag, "w") as f:
        f.write(mode)


def every_insert_refused(daemon, now, flag, ports):
    """Part 1; `now()` gives counters() of the daemon."""
    before = now()
    refuse(flag, "all")
    for port in ports:
        connections(1, port=port)
    wait_for("two failed swaps", lambda: now()["failures"] >= before["failures"] + 2,
             seen=now)
    if now()["swaps"] != before["swaps"]:
        fail(f"a swap succeeded while every insert was refused: {now()}")
    os.remove(flag)
    wait_for("a swap once inserts are allowed",
             lambda: now()["swaps"] > before["swaps"], seen=now)
    log = daemon.log()
    warnings, recoveries = log.count(SWAP_WARNING), log.count(SWAPS_AGAIN)
    print(f"every insert refused: {now()}; {warnings} warning, {recoveries} recovery")
    if (warnings, recoveries) != (1, 1):
        fail(f"expected one warning ({SWAP_WARNING!r}) and one line on the recovery "
             f"({SWAPS_AGAIN!r}), got {warnings} and {recoveries}:\n{log}")


def carried_tuples_refused(now, flag, holder, ports):
    """Part 2; `now()` gives counters() of the daemon."""
    before = now()
    held = []
    for _ in range(HELD):
        client = socket.create_connection(holder.getsockname(), timeout=10)
        held.append((client, holder.accept()[0]))
    # Both ends: the client's service port is HOLDER too.
    wait_for(f"{2 * HELD} ESTABLISHED sockets under the holder's port",
             lambda: now()["holder established"] == 2 * HELD,
             seen=now)
    refuse(flag, "carried")
    for port in ports:
        connections(1, port=port)
    wait_for("a swap with the carried tuples refused",
             lambda: now()["swaps"] > before["swaps"], seen=now)
    os.remove(flag)
    swapped = now()
    for client, server in held:
        aborted(client)
        aborted(server)
    wait_for("no ESTABLISHED socket under the holder's port",
             lambda: now()["holder established"] == 0, seen=now)
    after = now()
    print(f"carried tuples refused: {swapped} after the swap, {after} after the aborts")
    if swapped["holder established"] != 2 * HELD or swapped["failures"] != before["failures"]:
        fail(f"the swap without the carried tuples failed or lost the gauge: {swapped}")
    if after["moves lost"] != before["moves lost"]:
        fail(f"moves of the gauge lost: {before} before, {after} after")


def main():
    binary, refused_inserts = test_arguments(__doc__, 2)
    in_own_network_namespace()
    holder_port = free_port()
    first, second = ([free_port() for _ in range(NEW_PORTS)] for _ in range(2))
    ports = [holder_port, *first, *second]
    body = (f"filters:\n  local_ports: {ports}\n"
            f"labels:\n  max_series: 256\n  port:\n    max_values: 1\n    ports: {ports}\n")
    workdir = scratch_dir("swap-failures")
    flag = os.path.join(workdir, "refuse-inserts")
    wrapper = ["env", f"LD_PRELOAD={refused_inserts}", f"TCPSTATESD_TEST_REFUSE_INSERTS={flag}"]
    with Daemon(binary, body, workdir, wrapper=wrapper) as daemon:
        holder = socket.create_server(("127.0.0.1", holder_port), backlog=HELD)
        def now():
            return counters(daemon, holder_port)
        every_insert_refused(daemon, now, flag, first)
        carried_tuples_refused(now, flag, holder, second)
        holder.close()
        values = daemon.metrics()
        listeners = 2 * NEW_PORTS + 1
        closed = sample(values, "tcpstates_transitions_total", from_state="LISTEN",
                        to_state="CLOSE")
        timed = sample(values, "tcpstates_state_duration_seconds_count", state="LISTEN",
                       next_state="CLOSE")
        print(f"LISTEN -> CLOSE: {closed} transitions, {timed} durations of {listeners}")
        if (closed, timed) != (listeners, listeners):
            fail(f"expected each of the {listeners} listeners' LISTEN -> CLOSE counted once")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The queues' metrics as the daemon exports them, against the kernel's own counts.

Usage: queues_test.py TCPSTATESD_BINARY

The test runs in a network namespace of its own (it re-executes itself under `unshare -n`): the
daemon walks that namespace, and its TcpExtListenDrops and ip_local_port_range are the test's.

1. A listener with backlog 1 that never accepts: two clients complete their handshakes one after
   the other (the kernel queues one more than the backlog), then CLIENTS_DROPPED clients' SYNs
   are dropped until they close. At rest: tcpstates_listen_queue_length{port} 2, _limit 1, and
   tcpstates_listen_drops_total{port} equal to the namespace's TcpExtListenDrops, read before
   and after the scrape with no change between, in a scrape whose walk started after the last
   client closed.
2. ip_local_port_range set to EPHEMERAL_PORTS ports, HELD connections to one destination (a
   listener on a port listened on, so it is the `port` value): tcpstates_ephemeral_ports_used_
   ratio{port} is HELD / EPHEMERAL_PORTS exactly (the connections cannot move: never accepted).
3. A reload that takes the port label off the queues' families: the same figures per family only
   (the queues of every listener summed, no `port` label on any of their samples).
"""
import os
import signal
import socket
import sys
import time

from e2e_support import (WALK_CPU_PERCENT, WALK_TIMEOUT_S, Daemon, fail, in_own_network_namespace,
                         sample, scratch_dir, test_arguments, wait_for, walk_started_after)

# Any ports: the namespace is the test's own.
QUEUE_PORT = 7000
DESTINATION_PORT = 7001
CLIENTS_DROPPED = 5
EPHEMERAL_PORTS = 100
HELD = 90


def tcp_ext(name):
    """A TcpExt counter of this network namespace."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[0::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split()))[name])
    fail("no TcpExt in /proc/net/netstat")
    return 0


def accept_queue(port):
    """The accept queue of the listener on `port` as /proc/net/tcp shows it (rx_queue of a
    listener is its sk_ack_backlog)."""
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return int(queues.split(":")[1], 16)
    return None


def steady_scrape(daemon, since):
    """A scrape whose walk started after `since` with TcpExtListenDrops the same before and
    after it (nothing moved while the daemon counted): (values, ListenDrops)."""
    seen = {}

    def steady():
        before = tcp_ext("ListenDrops")
        values = daemon.metrics()
        after = tcp_ext("ListenDrops")
        seen.update(before=before, after=after)
        return (values, after) if before == after and walk_started_after(values, since) else None

    return wait_for("a walk at rest", steady, timeout=WALK_TIMEOUT_S, seen=lambda: seen)


def main():
    binary = test_arguments("usage: queues_test.py TCPSTATESD_BINARY", 1)[0]
    in_own_network_namespace()
    workdir = scratch_dir("queues")
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write(f"40000 {40000 + EPHEMERAL_PORTS - 1}")
    with Daemon(binary, f"metrics:\n  socket_walk_cpu_percent: {WALK_CPU_PERCENT}\n",
                workdir) as daemon:
        drops_at_start = tcp_ext("ListenDrops")
        listener = socket.create_server(("127.0.0.1", QUEUE_PORT), backlog=1)
        queued = []
        for n in (1, 2):
            queued.append(socket.create_connection(("127.0.0.1", QUEUE_PORT)))
            wait_for(f"{n} connection(s) in the accept queue",
                     lambda: accept_queue(QUEUE_PORT) == n,
                     seen=lambda: accept_queue(QUEUE_PORT))
        dropped = []
        for _ in range(CLIENTS_DROPPED):
            client = socket.socket()
            client.setblocking(False)
            if client.connect_ex(("127.0.0.1", QUEUE_PORT)) != 115:  # EINPROGRESS
                fail("a non-blocking connect did not start")
            dropped.append(client)
        wait_for(f"{CLIENTS_DROPPED} SYNs dropped",
                 lambda: tcp_ext("ListenDrops") >= drops_at_start + CLIENTS_DROPPED,
                 seen=lambda: tcp_ext("ListenDrops") - drops_at_start)
        for client in dropped:
            client.close()
        values, drops = steady_scrape(daemon, time.time())
        port = str(QUEUE_PORT)
        got = {
            "length": sample(values, "tcpstates_listen_queue_length", family="ipv4", port=port),
            "limit": sample(values, "tcpstates_listen_queue_limit", family="ipv4", port=port),
            "drops": sample(values, "tcpstates_listen_drops_total", family="ipv4", port=port),
        }
        want = {"length": 2, "limit": 1, "drops": drops - drops_at_start}
        if got != want:
            fail(f"the accept queue of port {port}: exported {got}, the kernel {want}")
        print(f"ok: port {port}: {got}, TcpExtListenDrops increased by {want['drops']}")

        destination = socket.create_server(("127.0.0.1", DESTINATION_PORT), backlog=HELD + 10)
        held = [socket.create_connection(("127.0.0.1", DESTINATION_PORT)) for _ in range(HELD)]
        since = time.time()
        values = wait_for("a walk after the connections were made",
                          lambda: (lambda v: v if walk_started_after(v, since) else None)(
                              daemon.metrics()))
        ratio = sample(values, "tcpstates_ephemeral_ports_used_ratio", family="ipv4",
                       port=str(DESTINATION_PORT))
        if ratio != HELD / EPHEMERAL_PORTS:
            fail(f"ephemeral ports towards port {DESTINATION_PORT}: exported {ratio}, "
                 f"held {HELD} of {EPHEMERAL_PORTS}")
        for name in ("tcpstatesd_socket_walk_untracked_listeners",
                     "tcpstatesd_socket_walk_uncounted_destination_sockets"):
            if sample(values, name) != 0:
                fail(f"{name} is {sample(values, name)}")
        print(f"ok: {HELD} of {EPHEMERAL_PORTS} ephemeral ports: ratio {ratio}")

        before = values["tcpstatesd_config_last_reload_success_timestamp_seconds"]
        daemon.write_config(f"metrics:\n  socket_walk_cpu_percent: {WALK_CPU_PERCENT}\n"
                            "labels:\n  port:\n    families: [transitions]\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: daemon.metrics()[
            "tcpstatesd_config_last_reload_success_timestamp_seconds"] > before)
        since = time.time()
        values = wait_for("a walk after the reload",
                          lambda: (lambda v: v if walk_started_after(v, since) else None)(
                              daemon.metrics()))
        queues = {key: value for key, value in values.items()
                  if key.startswith(("tcpstates_listen_", "tcpstates_ephemeral_"))}
        labelled = [key for key in queues if "port=" in key]
        if labelled:
            fail(f"the port label is still on: {labelled}")
        # Every listener of the namespace: the test's two and the daemon's own (empty).
        got = {"length": queues.get('tcpstates_listen_queue_length{family="ipv4"}'),
               "ratio": queues.get('tcpstates_ephemeral_ports_used_ratio{family="ipv4"}')}
        want = {"length": 2 + HELD, "ratio": HELD / EPHEMERAL_PORTS}
        if got != want:
            fail(f"without the port label: exported {got}, expected {want}; all: {queues}")
        print(f"ok: without the port label: {got}")
        for s in [listener, destination, *queued, *held]:
            s.close()
        daemon.stop()


if __name__ == "__main__":
    main()

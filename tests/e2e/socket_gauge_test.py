#!/usr/bin/env python3
"""tcpstates_sockets counts what `ss -tan` counts: every state, both families, sockets older
than the daemon, TIME_WAIT, and request sockets (SYN_RECV before the child exists).

Usage: socket_gauge_test.py TCPSTATESD_BINARY

The test runs in a network namespace of its own (it re-executes itself under `unshare -n`),
so that `ss` and the daemon's walk see exactly the test's sockets, and no other process's
sockets change state while it compares.

1. Before the daemon starts, sockets in every state a socket can rest in: ESTABLISHED pairs,
   listeners, CLOSE_WAIT with a FIN_WAIT2 peer (open: a full socket; closed: a timewait
   socket in its FIN_WAIT2 substate), TIME_WAIT, request sockets in SYN_RECV and clients in
   SYN_SENT (handshakes that cannot finish), over IPv4 and IPv6.
2. The first scrape equals `ss -tan`, per family and state, plus the scrape's own connection
   (two ESTABLISHED sockets while it is served).
3. After churn (connections opened and closed, some left in CLOSE_WAIT, FIN_WAIT2, TIME_WAIT;
   old ones closed), at rest: equal again.
4. Sockets of another network namespace (a child of the test's) are counted once they change
   state: FOREIGN connections opened there add 2 x FOREIGN ESTABLISHED and their listener to
   what ss shows in the test's namespace; once closed, their TIME_WAIT is not counted (only the daemon's own
   namespace is walked) and the gauge equals ss again.
"""
import os
import socket
import subprocess
import sys

from e2e_support import (FAMILIES, Connections, Daemon, fail, in_new_network_namespace,
                         in_own_network_namespace, sample,
                         scratch_dir, test_arguments)

# ss's names of the states, as the gauge names them.
SS_STATES = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
             "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
             "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN",
             "CLOSING": "CLOSING"}
GAUGE_STATES = sorted(SS_STATES.values())
# What the test leaves sockets in before the daemon starts (the others are passed through).
GAUGE_STATES_AT_REST = ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT2", "TIME_WAIT",
                        "CLOSE_WAIT", "LISTEN"]


FOREIGN = 8
# bench's holder of loopback connections: N held, "ready", closed in order at end of stdin.
HOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "bench", "hold_connections.py")


def ss_counts():
    """{(family, state): sockets} as `ss -tan` reports them."""
    counts = {}
    for family, flag in (("ipv4", "-4"), ("ipv6", "-6")):
        lines = subprocess.run(["ss", "-Htan", flag], check=True, capture_output=True,
                               text=True).stdout.splitlines()
        for line in lines:
            state = SS_STATES.get(line.split()[0])
            if state is None:
                fail(f"ss reported a state the gauge has no name for: {line}")
            counts[(family, state)] = counts.get((family, state), 0) + 1
    return counts


def gauge_counts(daemon):
    values = daemon.metrics()
    return {(family, state): int(sample(values, "tcpstates_sockets", family=family, state=state))
            for family in ("ipv4", "ipv6") for state in GAUGE_STATES}


def expect_gauge_equals_ss(daemon, when, required_states=(), elsewhere=None):
    """One scrape against ss just before it: equal but for the scrape's own two sockets and
    the IPv4 sockets of another namespace `elsewhere` counts per state. ss must show each of
    `required_states` in both families (else the test tests nothing)."""
    expected = ss_counts()
    for state, count in (elsewhere or {}).items():
        expected[("ipv4", state)] = expected.get(("ipv4", state), 0) + count
    missing = [(f, s) for f in FAMILIES for s in required_states if not expected.get((f, s))]
    if missing:
        fail(f"{when}: the test made no sockets in {missing}")
    expected[("ipv4", "ESTABLISHED")] = expected.get(("ipv4", "ESTABLISHED"), 0) + 2
    gauge = gauge_counts(daemon)
    wrong = {key: (gauge[key], expected.get(key, 0)) for key in gauge
             if gauge[key] != expected.get(key, 0)}
    shown = {f"{f}/{s}": n for (f, s), n in sorted(expected.items()) if n}
    if wrong:
        fail(f"{when}: gauge != ss (gauge, ss) for {wrong}; ss: {shown}")
    print(f"{when}: gauge == ss: {shown}")


class HalfClosed:
    """`count` connections whose client closed its sending side: the client in FIN_WAIT2,
    the server in CLOSE_WAIT. close_clients() turns each client into a timewait socket in
    its FIN_WAIT2 substate (an orphan waiting for the server's FIN)."""

    def __init__(self, count, family):
        self.connections = Connections(count, family)
        for client in self.connections.ends["client"]:
            client.shutdown(socket.SHUT_WR)
        for server in self.connections.ends["server"]:
            if server.recv(1) != b"":
                fail("expected EOF on the server side")

    def close_clients(self):
        self.connections.close_side("client")


def time_wait(count, family):
    """`count` connections closed by the client first: the client ends in TIME_WAIT."""
    Connections(count, family).close("client")


class UnfinishedHandshakes:
    """`count` handshakes left unfinished on each side. Request sockets in SYN_RECV: a
    listener with TCP_DEFER_ACCEPT ignores the final ACK of a connection that sends no data
    (its client is ESTABLISHED). Clients in SYN_SENT: a listener with a backlog of 0 whose
    accept queue holds one connection never accepted drops every further SYN."""

    def __init__(self, count, family):
        address_family, host = FAMILIES[family]
        self.sockets = []
        deferring = self.listener(address_family, host, count)
        deferring.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 60)
        full = self.listener(address_family, host, 0)
        self.connect(address_family, host, full.getsockname()[1])  # fills the queue
        for _ in range(count):
            self.connect(address_family, host, deferring.getsockname()[1])
            self.connect(address_family, host, full.getsockname()[1])

    def listener(self, address_family, host, backlog):
        listener = socket.socket(address_family)
        listener.bind((host, 0))
        listener.listen(backlog)
        self.sockets.append(listener)
        return listener

    def connect(self, address_family, host, port):
        client = socket.socket(address_family)
        client.setblocking(False)
        client.connect_ex((host, port))
        self.sockets.append(client)

    def close(self):
        for s in self.sockets:
            s.close()


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    workdir = scratch_dir("gauge")

    old = {family: Connections(12, family) for family in FAMILIES}
    half_closed = {family: HalfClosed(5, family) for family in FAMILIES}
    half_closed["ipv4"].close_clients()
    for family in FAMILIES:
        time_wait(4, family)
    unfinished = {family: UnfinishedHandshakes(3, family) for family in FAMILIES}

    with Daemon(binary, "", workdir) as daemon:
        seeded = daemon.metrics()["tcpstatesd_startup_snapshot_sockets"]
        expect_gauge_equals_ss(daemon, "first scrape", GAUGE_STATES_AT_REST)
        print(f"found at start: {seeded:.0f} sockets")

        # Churn: the old connections close, the request sockets go away, new ones come.
        for family in FAMILIES:
            old[family].close("server")
            time_wait(6, family)
        unfinished["ipv4"].close()
        half_closed["ipv6"].close_clients()
        for family in FAMILIES:
            half_closed[family].connections.close("client")
        fresh = HalfClosed(7, "ipv4")
        established = Connections(9, "ipv6")
        expect_gauge_equals_ss(daemon, "after churn")

        fresh.connections.close("client")
        established.close()
        unfinished["ipv6"].close()
        expect_gauge_equals_ss(daemon, "all test connections closed")

        foreign = subprocess.Popen(
            in_new_network_namespace([sys.executable, HOLDER, str(FOREIGN)]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if foreign.stdout.readline().strip() != "ready":
            fail("the child namespace's connections did not open")
        expect_gauge_equals_ss(daemon, f"{FOREIGN} connections in a child namespace",
                               elsewhere={"ESTABLISHED": 2 * FOREIGN, "LISTEN": 1})
        foreign.stdin.close()
        if foreign.wait(timeout=30) != 0:
            fail("the child namespace's connections did not close cleanly")
        expect_gauge_equals_ss(daemon, "the child namespace's connections closed")
        lost = sample(daemon.metrics(), "tcpstatesd_events_lost_total")
        if lost:
            fail(f"{lost:.0f} events lost")
        daemon.stop()


if __name__ == "__main__":
    main()

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
Each comparison takes `ss -tan` just before and just after the scrape, and only counts once
the two agree (the scrape's own connection aside) and the daemon's last walk of the sockets
(where the gauge's TIME_WAIT and request sockets come from) started after the first reading:
then no socket changed state while the daemon counted. Sockets still on their way (a FIN
whose delayed ACK is due, a last ACK in flight) make the readings differ, and the comparison
is taken again, for up to SETTLE_TIMEOUT_S plus WALK_TIMEOUT_S. The daemon walks with half a
CPU (WALK_CPU_PERCENT): a walk of these few sockets every 5 s.
4. Sockets of another network namespace (a child of the test's) are counted once they change
   state: FOREIGN connections opened there add 2 x FOREIGN ESTABLISHED and their listener to
   what ss shows in the test's namespace; once closed, their TIME_WAIT is not counted (only the daemon's own
   namespace is walked) and the gauge equals ss again.
"""
import os
import socket
import subprocess
import sys
import time

from e2e_support import (FAMILIES, WALK_CPU_PERCENT, WALK_TIMEOUT_S, Connections, Daemon, fail,
                         in_new_network_namespace, in_own_network_namespace, KeptAlive, sample,
                         scratch_dir, series, test_arguments, wait_for, walk_started_after)

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
# Loopback sockets settle within a delayed ACK (at most 200 ms, TCP_DELACK_MAX) or a
# retransmission timeout (at least 200 ms, TCP_RTO_MIN) of the test's last action; 10 s is
# 50 of them, for a loaded machine.
SETTLE_TIMEOUT_S = 10.0
# tcpi_state of struct tcp_info (its first byte): the kernel's TCP_FIN_WAIT2.
TCP_FIN_WAIT2 = 5
# bench's holder of loopback connections: N held, "ready", closed in order at end of stdin.
HOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "bench", "hold_connections.py")


def ss_sockets():
    """Every socket `ss -tan` reports, as a sorted list of (family, state, local, peer)."""
    sockets = []
    for family, flag in (("ipv4", "-4"), ("ipv6", "-6")):
        lines = subprocess.run(["ss", "-Htan", flag], check=True, capture_output=True,
                               text=True).stdout.splitlines()
        for line in lines:
            fields = line.split()
            state = SS_STATES.get(fields[0])
            if state is None:
                fail(f"ss reported a state the gauge has no name for: {line}")
            sockets.append((family, state, fields[3], fields[4]))
    return sorted(sockets)


def per_state(sockets):
    """{(family, state): sockets}"""
    counts = {}
    for family, state, _, _ in sockets:
        counts[(family, state)] = counts.get((family, state), 0) + 1
    return counts


def gauge_counts(values):
    """{(family, state): sockets} of a scrape, summed over the other labels."""
    sums = series(values, "tcpstates_sockets", "family", "state")
    return {(family, state): int(sums.get((family, state), 0))
            for family in ("ipv4", "ipv6") for state in GAUGE_STATES}


def settled_scrape(daemon, when):
    """A scrape and the sockets ss shows around it, once ss showed the same sockets just before
    and just after it (the scrape's own connection left out of both) and the daemon walked the
    sockets since they were so: (samples, sockets). The scrapes share one kept-alive
    connection, so that they leave no TIME_WAIT socket behind them."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S + WALK_TIMEOUT_S
    with KeptAlive(daemon.target) as scraper:
        scraper.metrics()  # connects
        client = "%s:%d" % scraper.connection.sock.getsockname()
        own = ((client, daemon.target), (daemon.target, client))

        def others(sockets):
            return [s for s in sockets if (s[2], s[3]) not in own]
        unchanged, since = None, None  # the sockets seen settled, and since when
        while True:
            counted_at = time.time()
            before = others(ss_sockets())
            values = scraper.metrics()
            after = others(ss_sockets())
            if before != after:
                unchanged = None
            elif before != unchanged:
                unchanged, since = before, counted_at
            if unchanged is not None and walk_started_after(values, since):
                return values, before
            if time.monotonic() > deadline:
                fail(f"{when}: no settled scrape after a walk within "
                     f"{SETTLE_TIMEOUT_S + WALK_TIMEOUT_S} s (settled: {before == after}); ss "
                     f"before the last scrape only: {sorted(set(before) - set(after))}, after "
                     f"it only: {sorted(set(after) - set(before))}")
            time.sleep(0.05 if unchanged is None else 0.5)


def expect_gauge_equals_ss(daemon, when, required_states=(), elsewhere=None):
    """One scrape against the settled sockets ss shows around it: equal but for the scrape's
    own two sockets and the IPv4 sockets of another namespace `elsewhere` counts per state. ss
    must show each of `required_states` in both families (else the test tests nothing)."""
    values, sockets = settled_scrape(daemon, when)
    expected = per_state(sockets)
    for state, count in (elsewhere or {}).items():
        expected[("ipv4", state)] = expected.get(("ipv4", state), 0) + count
    missing = [(f, s) for f in FAMILIES for s in required_states if not expected.get((f, s))]
    if missing:
        fail(f"{when}: the test made no sockets in {missing}")
    expected[("ipv4", "ESTABLISHED")] = expected.get(("ipv4", "ESTABLISHED"), 0) + 2
    gauge = gauge_counts(values)
    wrong = {key: (gauge[key], expected.get(key, 0)) for key in gauge
             if gauge[key] != expected.get(key, 0)}
    shown = {f"{f}/{s}": n for (f, s), n in sorted(expected.items()) if n}
    if wrong:
        hint = ""
        if all(gauge_count > ss_count for gauge_count, ss_count in wrong.values()):
            hint = ("; only more in the gauge: it also counts the sockets of every other network "
                    "namespace that changed state since the daemon started, so another job's "
                    "connections on this host show there (the test needs the host to itself)")
        fail(f"{when}: gauge != ss (gauge, ss) for {wrong}; ss: {shown}{hint}")
    print(f"{when}: gauge == ss: {shown}")


def tcp_state(sock):
    """The kernel's state of a socket (tcpi_state, the first byte of struct tcp_info)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


class HalfClosed:
    """`count` connections whose client closed its sending side: the client in FIN_WAIT2,
    the server in CLOSE_WAIT. close_clients() turns each client into a timewait socket in
    its FIN_WAIT2 substate (an orphan waiting for the server's FIN)."""

    def __init__(self, count, family):
        self.connections = Connections(count, family)
        clients = self.connections.ends["client"]
        for client in clients:
            client.shutdown(socket.SHUT_WR)
        for server in self.connections.ends["server"]:
            if server.recv(1) != b"":
                fail("expected EOF on the server side")
        # The server saw the FIN, but its ACK (a delayed one) may still be due: the client is
        # in FIN_WAIT1 until it arrives.
        wait_for("every half-closed client to reach FIN_WAIT2",
                 lambda: all(tcp_state(c) == TCP_FIN_WAIT2 for c in clients),
                 timeout=SETTLE_TIMEOUT_S, interval=0.02,
                 seen=lambda: f"tcpi_state {[tcp_state(c) for c in clients]}")

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

    with Daemon(binary, f"metrics:\n  socket_walk_cpu_percent: {WALK_CPU_PERCENT}\n",
                workdir) as daemon:
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

        # Its servers closed last: each is in LAST_ACK until its client's ACK arrives, which
        # ss in this namespace cannot show.
        def last_acks_left():
            values, sockets = settled_scrape(daemon, "the child namespace's servers closing")
            key = ("ipv4", "LAST_ACK")
            return gauge_counts(values)[key] - per_state(sockets).get(key, 0)
        wait_for("the child namespace's servers to leave LAST_ACK",
                 lambda: last_acks_left() == 0, timeout=SETTLE_TIMEOUT_S,
                 seen=lambda: f"{last_acks_left()} IPv4 LAST_ACK in the gauge besides ss's")
        expect_gauge_equals_ss(daemon, "the child namespace's connections closed")
        lost = sample(daemon.metrics(), "tcpstatesd_events_lost_total")
        if lost:
            fail(f"{lost:.0f} events lost")
        daemon.stop()


if __name__ == "__main__":
    main()

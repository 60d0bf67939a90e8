#!/usr/bin/env python3
"""tcpstates_state_oldest_seconds: the age of the oldest socket in each state per service port,
exact where the programs saw the socket enter its state, a marked lower bound where not.

Usage: state_oldest_test.py TCPSTATESD_BINARY

The test runs in a network namespace of its own (it re-executes itself under `unshare -n`), so
that the daemon's walk sees only its sockets. Servers left in CLOSE_WAIT: their client closes,
the server reads the EOF and keeps its socket open.

1. OLD: an IPv6 server in CLOSE_WAIT from HELD_BEFORE_S before the daemon starts. Its entry time
   is unknown to the daemon: tcpstates_state_oldest_start_known is 0 and the age is the time
   since the start-up walk found it (at least the time since the daemon was ready, at most the
   time since it was launched), never more: a made-up age (e.g. from a zero entry time) would
   pass the upper bound, which is HELD_BEFORE_S less than the socket's real age.
2. FIRST and SECOND: IPv4 servers on another port entering CLOSE_WAIT GAP_S apart, the
   daemon running. After FIRST has been held HOLD_S (6 s) the age reads >= 5 s, start known;
   exactly: between the time since the test saw FIRST in CLOSE_WAIT (the scrape's start) and
   the time since its client's close() began (the scrape's end). The daemon computes the age at
   the scrape from the entry time, with the same clock as time.monotonic() (CLOCK_MONOTONIC):
   no margin from the walk period (at most one walk every 5 s) is needed once a walk has seen
   the socket, which the test waits for (a walk that started after the entry).
3. FIRST closed: once a walk has passed, the series reads SECOND's age (the next oldest).
4. SECOND closed: the series disappears.
5. Closed, FIRST's CLOSE_WAIT -> LAST_ACK is observed in tcpstates_state_duration_seconds, and
   OLD's is counted (tcpstates_transitions_total) but never observed: the time the walk first
   saw a socket is not its start.
"""
import socket
import time

from e2e_support import (FAMILIES, WALK_CPU_PERCENT, WALK_TIMEOUT_S, Daemon, fail, free_port,
                         in_own_network_namespace, KeptAlive, sample, sample_name_and_labels,
                         scratch_dir, test_arguments, wait_for, walk_started_after)

HELD_BEFORE_S = 3.0
HOLD_S = 6.0
# Apart by more than a scrape takes, so that FIRST's and SECOND's bounds do not overlap.
GAP_S = 2.0


class CloseWait:
    """A loopback connection whose server is left in CLOSE_WAIT: `closing` and `seen` are
    time.monotonic() just before the client's close() and just after the server read its
    EOF, which bound the server's entry into CLOSE_WAIT."""

    def __init__(self, listener, family):
        address_family, host = FAMILIES[family]
        client = socket.create_connection((host, listener.getsockname()[1]), timeout=10)
        self.server, _ = listener.accept()
        self.server.settimeout(10)
        self.closing = time.monotonic()
        client.close()
        if self.server.recv(1) != b"":
            fail("expected EOF on the server side")
        self.seen = time.monotonic()

    def close(self):
        self.server.close()


def listener_on(family, port):
    address_family, host = FAMILIES[family]
    listener = socket.socket(address_family)
    listener.bind((host, port))
    listener.listen(8)
    return listener


def oldest(values, family, port):
    """(seconds, start known) of the CLOSE_WAIT series of `family` and `port`, or None."""
    found = {}
    for key, value in values.items():
        name, labels = sample_name_and_labels(key)
        if (name.startswith("tcpstates_state_oldest_") and
                labels == {"family": family, "state": "CLOSE_WAIT", "port": str(port)}):
            found[name] = value
    if not found:
        return None
    if set(found) != {"tcpstates_state_oldest_seconds", "tcpstates_state_oldest_start_known"}:
        fail(f"the series of {family} port {port} is incomplete: {found}")
    return found["tcpstates_state_oldest_seconds"], found["tcpstates_state_oldest_start_known"]


class Scrapes:
    """Scrapes over one kept-alive connection, each with the monotonic time around it."""

    def __init__(self, daemon):
        self.connection = KeptAlive(daemon.target)

    def after_walk_since(self, when, what):
        """A scrape whose walk started after time.monotonic() `when`: (values, start, end)."""
        wall = time.time() - (time.monotonic() - when)
        last = {}

        def scrape():
            start = time.monotonic()
            values = self.connection.metrics()
            last.update(values=values, start=start, end=time.monotonic())
            return walk_started_after(values, wall)
        wait_for(f"a walk of the sockets after {what}", scrape, timeout=WALK_TIMEOUT_S,
                 seen=lambda: "last walk at "
                 f"{last['values'].get('tcpstatesd_socket_walk_timestamp_seconds')}, wanted "
                 f"after {wall}" if last else "no scrape")
        return last["values"], last["start"], last["end"]

def oldest_there(values, family, port, missing):
    """oldest() of a series that must be there: else fails with `missing`."""
    found = oldest(values, family, port)
    if found is None:
        fail(missing)
    return found



def expect_between(what, age, low, high):
    if not low <= age <= high:
        fail(f"{what}: age {age:.3f} s, expected from {low:.3f} to {high:.3f} s")
    print(f"{what}: {age:.3f} s in [{low:.3f}, {high:.3f}]")


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    workdir = scratch_dir("state_oldest")
    old_port, port = free_port(), free_port()

    old_listener = listener_on("ipv6", old_port)
    old = CloseWait(old_listener, "ipv6")
    time.sleep(HELD_BEFORE_S)  # the old socket's real age exceeds the daemon's by this
    launched = time.monotonic()
    # The series cap at its maximum: the other tests' traffic (counted in every namespace, by
    # cgroup) cannot fill it before this test's series.
    config = (f"metrics:\n  socket_walk_cpu_percent: {WALK_CPU_PERCENT}\n"
              "labels:\n  max_series: 100000\n"
              "  port:\n    families: [transitions, state_durations, state_oldest]\n"
              f"    ports: [{old_port}, {port}]\n")
    with Daemon(binary, config, workdir) as daemon:
        ready = time.monotonic()
        scrapes = Scrapes(daemon)

        values, start, end = scrapes.after_walk_since(ready, "the daemon was ready")
        age, known = oldest_there(values, "ipv6", old_port, "no CLOSE_WAIT series for the "
                                  f"socket older than the daemon (port {old_port})")
        if known != 0:
            fail(f"the socket older than the daemon is marked start known ({known})")
        # Its real age is at least end - old.seen > end - launched + HELD_BEFORE_S.
        expect_between("older than the daemon, a lower bound", age, start - ready, end - launched)

        listener = listener_on("ipv4", port)
        first = CloseWait(listener, "ipv4")
        time.sleep(GAP_S)
        second = CloseWait(listener, "ipv4")
        time.sleep(max(0.0, first.seen + HOLD_S - time.monotonic()))  # FIRST held HOLD_S
        values, start, end = scrapes.after_walk_since(second.seen, "SECOND entered CLOSE_WAIT")
        age, known = oldest_there(values, "ipv4", port,
                                  f"no CLOSE_WAIT series for port {port} after {HOLD_S} s")
        if known != 1:
            fail(f"FIRST's entry was seen, but the start is marked unknown ({known})")
        if age < 5.0:
            fail(f"held {HOLD_S} s in CLOSE_WAIT, read {age:.3f} s")
        expect_between("FIRST, held 6 s", age, start - first.seen, end - first.closing)

        first.close()
        closed = time.monotonic()
        values, start, end = scrapes.after_walk_since(closed, "FIRST was closed")
        age, _ = oldest_there(values, "ipv4", port,
                              "the series disappeared with SECOND still in CLOSE_WAIT")
        expect_between("FIRST closed: SECOND", age, start - second.seen, end - second.closing)

        second.close()
        closed = time.monotonic()
        values, _, _ = scrapes.after_walk_since(closed, "SECOND was closed")
        if oldest(values, "ipv4", port) is not None:
            fail(f"the series of port {port} stayed after its last CLOSE_WAIT socket closed: "
                 f"{oldest(values, 'ipv4', port)}")
        print("SECOND closed: the series is gone")

        old.close()
        # Counted by the programs within close() (the server's CLOSE_WAIT -> LAST_ACK).
        values = daemon.metrics()
        for family, at, observed in (("ipv4", port, 2), ("ipv6", old_port, 0)):
            closes = sample(values, "tcpstates_transitions_total", family=family, port=at,
                            from_state="CLOSE_WAIT", to_state="LAST_ACK")
            durations = sample(values, "tcpstates_state_duration_seconds_count", family=family,
                               port=at, state="CLOSE_WAIT", next_state="LAST_ACK")
            if (closes, durations) != (2 if observed else 1, observed):
                fail(f"{family} port {at}: CLOSE_WAIT -> LAST_ACK counted {closes}, observed "
                     f"{durations} times, expected {2 if observed else 1} and {observed}")
        print("durations: FIRST's and SECOND's observed, OLD's not")
        scrapes.connection.close()
        listener.close()
        old_listener.close()
        daemon.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Thousands of ports and hundreds of cgroups stay within the label and series caps, nothing
lost, and values that are gone make room.

In a network namespace of its own, the test listens on PORTS ports and connects once to each,
from CGROUPS cgroups of its own in turn (the test process moves itself into each before
connect()), with the daemon capped at MAX_PORTS port values, MAX_CGROUPS cgroup values and
MAX_SERIES labelled samples, both labels on the transitions and the gauge. It asserts:

1. each label has exactly its max_values values, the labelled samples (the transitions'
   series and the gauge's label sets) stay within MAX_SERIES, and what did not fit was
   counted in the overflow metrics;
2. every transition is counted, summed over the labels (folded into "other", not dropped);
3. once the listeners are closed and the cgroups removed (gone), new ports and new cgroups
   take their places: their names appear and the replacements are counted (the replaced
   values' series are removed, as a removed container's are: sums over the labels drop, rates
   stay right).

Usage: cardinality_test.py BINARY
"""
import os
import re
import time

from e2e_support import (WALK_PERIOD_S, Cgroups, Daemon, connect_once, fail,
                         in_own_network_namespace, new_listeners, sample, scratch_dir,
                         test_arguments, wait_for)

PORTS = 2000
CGROUPS = 200
MAX_PORTS = 50
MAX_CGROUPS = 20
MAX_SERIES = 600
NEW = 5
# Two walks come within two walk periods; for a loaded machine, five times that.
TWO_WALKS_TIMEOUT_S = 5 * 2 * WALK_PERIOD_S
CONFIG = f"""labels:
  max_series: {MAX_SERIES}
  port:
    families: [transitions, sockets]
    max_values: {MAX_PORTS}
  cgroup:
    families: [transitions, sockets]
    max_values: {MAX_CGROUPS}
"""


def connect_each(listeners, cgroups, names):
    """One connection to each listener, the client in names[i % len(names)]. The test
    process is back in the root cgroup afterwards."""
    for i, listener in enumerate(listeners):
        cgroups.enter(names[i % len(names)])
        connect_once(listener)
    cgroups.enter("")


def labelled_samples(values):
    """Samples of the transitions and the gauge that carry a value other than "other"."""
    count = 0
    for key in values:
        if key.startswith(("tcpstates_transitions_total{", "tcpstates_sockets{")):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
            count += labels.get("port", "other") != "other" or labels.get("cgroup",
                                                                            "other") != "other"
    return count


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    names = [f"c{i}.scope" for i in range(CGROUPS)]
    fresh = [f"new{i}.scope" for i in range(NEW)]
    with Cgroups("cardinality", names + fresh) as cgroups, \
            Daemon(binary, CONFIG, scratch_dir("cardinality")) as daemon:
        opened = new_listeners(PORTS)
        connect_each(opened, cgroups, names)
        # The listeners and cgroups stay until the counts are checked: values that are gone
        # would be replaced, and their series removed, as the scrapes' walks find them gone.
        wait_for("every connection's last transition", lambda: sample(
            daemon.metrics(), "tcpstates_transitions_total", from_state="ESTABLISHED",
            to_state="FIN_WAIT1") >= PORTS)
        values = daemon.metrics()
        for label, limit in (("port", MAX_PORTS), ("cgroup", MAX_CGROUPS)):
            have = values[f'tcpstatesd_label_values{{label="{label}"}}']
            overflows = values[f'tcpstatesd_label_value_overflows_total{{label="{label}"}}']
            if have != limit or overflows == 0:
                fail(f"{label}: {have} values ({limit} allowed), {overflows} overflows")
            print(f"{label}: {have:.0f} values of {limit} allowed, {overflows:.0f} transitions "
                  "counted under other")
        used = values["tcpstatesd_labelled_series"]
        seen = labelled_samples(values)
        if used > MAX_SERIES or seen > MAX_SERIES:
            fail(f"labelled samples: {used:.0f} counted, {seen} in the scrape, cap {MAX_SERIES}")
        print(f"labelled samples: {seen} in the scrape ({used:.0f} of the counters), cap "
              f"{MAX_SERIES}")
        got = sample(values, "tcpstates_transitions_total", from_state="CLOSE",
                     to_state="LISTEN")
        if got != PORTS + 1:  # and the daemon's own listener
            fail(f"CLOSE -> LISTEN: {got}, expected {PORTS + 1}" + (
                " (more: the daemon counts the listeners of every network namespace, so another "
                "job's listener on this host shows here; the test needs the host to itself)"
                if got > PORTS + 1 else ""))
        lost = sum(v for k, v in values.items() if k.startswith("tcpstatesd_events_lost_total"))
        if lost:
            fail(f"{lost} events lost")
        print(f"every transition counted: {PORTS} listeners, summed over the labels; none lost")

        # Closed ports and removed cgroups are gone: new ones replace them.
        old_ports = {listener.getsockname()[1] for listener in opened}
        for listener in opened:
            listener.close()
        for name in names:
            os.rmdir(cgroups.path(name))
        cgroups.names = fresh
        # The daemon learns which ports are no longer listened on from its walks of the
        # sockets: one that started after the close.
        walks = daemon.metrics()["tcpstatesd_socket_walks_total"]
        wait_for("a walk of the sockets after the listeners closed",
                 lambda: daemon.metrics()["tcpstatesd_socket_walks_total"] >= walks + 2,
                 timeout=TWO_WALKS_TIMEOUT_S)
        # A full cgroup label looks for removed cgroups at most once a second, when a new cgroup
        # comes: a rate limit of the daemon's, with nothing to wait for but its period (and
        # 0.1 s for the timer's slack), or the new cgroups would find no room yet.
        time.sleep(1.1)
        # On ports none of the closed listeners had: a port bind(0) hands out again still has
        # its value (the only way a new port gets one in a full label without a replacement;
        # seen once in eight runs).
        fresh_listeners = new_listeners(NEW, avoid=old_ports)
        connect_each(fresh_listeners, cgroups, fresh)
        new_ports = [str(listener.getsockname()[1]) for listener in fresh_listeners]

        def replaced(values):
            return all(sample(values, "tcpstates_transitions_total", port=port, cgroup=name,
                              from_state="CLOSE", to_state="SYN_SENT") == 1
                       for port, name in zip(new_ports, fresh))
        def new_values_seen():
            values = daemon.metrics()
            counted = {(port, name): sample(values, "tcpstates_transitions_total", port=port,
                                            cgroup=name, from_state="CLOSE", to_state="SYN_SENT")
                       for port, name in zip(new_ports, fresh)}
            budget = {k: v for k, v in values.items() if k.startswith(
                ("tcpstatesd_label_value", "tcpstatesd_labelled_series",
                 "tcpstatesd_series_overflows_total"))}
            return (f"CLOSE -> SYN_SENT per new (port, cgroup): {counted}; {budget} (other "
                    "jobs' listeners and cgroups on this host compete for the freed values)")
        values = wait_for("the new ports and cgroups to get values of their own",
                          lambda: (lambda v: v if replaced(v) else None)(daemon.metrics()),
                          timeout=10, seen=new_values_seen)
        for label in ("port", "cgroup"):
            count = values[f'tcpstatesd_label_values_replaced_total{{label="{label}"}}']
            if count < NEW:
                fail(f"{label}: {count} values replaced, expected at least {NEW}")
        print(f"{NEW} new ports and {NEW} new cgroups replaced gone values; the caps hold")
        for listener in fresh_listeners:
            listener.close()
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

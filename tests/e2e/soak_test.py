#!/usr/bin/env python3
"""Soak: one million connections of churn against the real daemon, its RSS sampled.

Usage: soak_test.py TCPSTATESD_BINARY TCPSTATESD_CHURN [CONNECTIONS]

The churn (bench's load generator) runs in a network namespace of its own (unshare --net,
lo up), as bench/run.py does: its TIME_WAIT sockets then exhaust nobody's ports but its own.
The tracepoint is global, so the daemon sees the churn and whatever else the machine does:
the churn runs over IPv6 and the daemon reports IPv6 only, which leaves out nearly all other
traffic (loopback test traffic here is mostly IPv4); what remains is bounded below.

Expected:
- the churn completes CONNECTIONS (default 1000000) connections without a failure;
- tcpstates_transitions_total{ipv6, SYN_SENT->ESTABLISHED} grew by at least CONNECTIONS and
  by at most CONNECTIONS + 0.1 % (other IPv6 traffic on the machine; none on the idle CI
  machine);
- no event lost (any reason);
- RSS (VmRSS, sampled every second, each sample after a scrape of /metrics, as Prometheus
  would scrape during the churn) does not grow with the connections: no sample of the second
  half of the run exceeds the largest of the first half by more than RSS_GROWTH_KIB.
  Everything the daemon keeps is bounded by its configuration (ring buffer mapping, metric
  series: the churn's ports make their labelled series in its first second, kernel socket
  state outside the process) and the per-event path allocates nothing; what grows at first
  (the allocator's arenas, the HTTP threads' buffers as scrapes come and go: 1.5 MiB, flat
  from about 14 s of a 57 s run) is over within the first half. A leak of one byte per
  connection would add about 490 KiB over the second half's 500,000 connections.
- the daemon stays healthy and ready throughout, and stops cleanly.
"""
import json
import subprocess
import sys
import tempfile
import threading
import time

from e2e_support import (Daemon, fail, http_status, in_new_network_namespace, require_root, sample,
                         wait_for)

RSS_GROWTH_KIB = 256
TIME_LIMIT_S = 150


def established(values):
    return sample(values, "tcpstates_transitions_total", family="ipv6", from_state="SYN_SENT",
                  to_state="ESTABLISHED")


def lost(values):
    return sample(values, "tcpstatesd_events_lost_total")


def main():
    if len(sys.argv) not in (3, 4):
        fail(__doc__)
    if not require_root():
        return
    binary, churn = sys.argv[1], sys.argv[2]
    connections = int(sys.argv[3]) if len(sys.argv) == 4 else 1_000_000
    daemon = Daemon(binary, "filters:\n  families: [ipv6]\n",
                    tempfile.mkdtemp(prefix="tcpstatesd-soak-"))
    samples = []  # (seconds since start, VmRSS KiB)
    unhealthy = []
    stop = threading.Event()

    def sampler():
        start = time.monotonic()
        while not stop.is_set():
            daemon.metrics()
            samples.append((time.monotonic() - start, daemon.rss_kib()))
            status = http_status(daemon.target, "/-/healthy")
            if status != 200:
                unhealthy.append((time.monotonic() - start, status))
            stop.wait(1.0)

    with daemon:
        before = daemon.metrics()
        thread = threading.Thread(target=sampler)
        thread.start()
        try:
            result = subprocess.run(
                in_new_network_namespace([churn, "-6", "--connections", str(connections),
                                          "--duration", str(TIME_LIMIT_S)]),
                capture_output=True, text=True, timeout=TIME_LIMIT_S + 60)
            wait_for("the daemon to catch up with the churn",
                     lambda: established(daemon.metrics()) - established(before)
                     >= connections, timeout=30)
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join()
        if result.returncode != 0:
            fail(f"the churn failed ({result.returncode}): {result.stdout}{result.stderr}")
        report = json.loads(result.stdout.strip().splitlines()[-1])
        if report["connections"] != connections or report["failed"] != 0:
            fail(f"the churn made {report['connections']} connections with "
                 f"{report['failed']} failures, expected {connections} without failure")
        after = daemon.metrics()
        seen = established(after) - established(before)
        events_lost = lost(after) - lost(before)
        nested = (after["tcpstatesd_nested_transitions_total"]
                  - before["tcpstatesd_nested_transitions_total"])
        half = len(samples) // 2
        first = [kib for _, kib in samples[:half]]
        second = [kib for _, kib in samples[half:]]
        print(f"churn: {report['connections']} connections in {report['seconds']:.1f} s "
              f"({report['connections_per_second']:.0f}/s); SYN_SENT->ESTABLISHED counted "
              f"{seen:.0f}; events lost {events_lost:.0f} (nested transitions handled "
              f"{nested:.0f}); events received "
              f"{after['tcpstatesd_events_received_total'] - before['tcpstatesd_events_received_total']:.0f}")
        print("VmRSS KiB per second: " + " ".join(str(kib) for _, kib in samples))
        if len(second) < 5:
            fail(f"too few RSS samples: {len(samples)}")
        growth = max(second) - max(first)
        print(f"RSS max in the first half {max(first)} KiB, in the second {max(second)} KiB, "
              f"growth {growth} KiB (bound {RSS_GROWTH_KIB} KiB)")
        if growth > RSS_GROWTH_KIB:
            fail(f"RSS grew by {growth} KiB in the second half of the run "
                 f"(bound {RSS_GROWTH_KIB} KiB)")
        if seen < connections or seen > connections * 1.001:
            fail(f"SYN_SENT->ESTABLISHED counted {seen}, expected {connections} (+0.1 % at most)")
        if events_lost != 0:
            fail(f"{events_lost} events lost during the soak")
        if unhealthy:
            fail(f"/-/healthy was not 200 during the soak: {unhealthy[:5]}")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

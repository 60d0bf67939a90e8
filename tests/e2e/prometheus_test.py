#!/usr/bin/env python3
"""End to end: a real tcpstatesd scraped by a real Prometheus while real connections run.

Usage: prometheus_test.py TCPSTATESD_BINARY DOCS_METRICS_MD

Starts the daemon on a loopback port, a Prometheus server scraping it every second, makes
real loopback TCP connections and asserts, through Prometheus' HTTP query API, that the
SYN_SENT -> ESTABLISHED counter and its histogram grew by at least the number of
connections made (other jobs' connections count too), and that the IPv6 ESTABLISHED sockets
gauge of the held connections' port (the one value of the port label) is exactly both ends of
each while they are held open and 0 after they close. Also checks the daemon's own
output with `promtool check metrics`, that every exported metric is documented, and that
SIGTERM stops the daemon with exit 0 and leaves no BPF program of ours behind.
"""
import json
import subprocess
import threading
import urllib.parse
import urllib.request

from e2e_support import (Connections, Daemon, Prometheus, connections, fail, free_port,
                         require_tools, scrape_every_second, scratch_dir, test_arguments,
                         wait_for)

CONNECTIONS = 60
HELD_OPEN = 20


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def sample(prometheus, expression):
    """The value of a scalar-like PromQL query, or None when it returns no series."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    _, body = http_get(url)
    result = json.loads(body)
    if result["status"] != "success":
        fail(f"query {expression!r} failed: {body}")
    samples = result["data"]["result"]
    return float(samples[0]["value"][1]) if samples else None


def query(prometheus, expression):
    value = sample(prometheus, expression)
    return 0.0 if value is None else value


def histogram_inconsistencies(exposition):
    """Series whose _count differs from their +Inf bucket in one scrape."""
    counts, infinite = {}, {}
    for line in exposition.splitlines():
        if line.startswith("tcpstates_state_duration_seconds_count{"):
            labels, value = line[len("tcpstates_state_duration_seconds_count"):].rsplit(" ", 1)
            counts[labels] = value
        elif line.startswith("tcpstates_state_duration_seconds_bucket{") and 'le="+Inf"' in line:
            labels, value = line[len("tcpstates_state_duration_seconds_bucket"):].rsplit(" ", 1)
            infinite[labels.replace(',le="+Inf"', "")] = value
    return [labels for labels, value in counts.items() if infinite.get(labels) != value]


class ConcurrentScrapes:
    """Scrapes the daemon from two threads while traffic runs; every scrape must be whole
    and internally consistent."""

    def __init__(self, target):
        self.target, self.stop, self.scrapes, self.errors = target, False, 0, []
        self.threads = [threading.Thread(target=self.run) for _ in range(2)]

    def run(self):
        while not self.stop and not self.errors:
            try:
                _, text = http_get(f"http://{self.target}/metrics")
            except OSError as error:
                self.errors.append(f"scrape failed: {error}")
                return
            bad = histogram_inconsistencies(text)
            if bad:
                self.errors.append(f"_count != +Inf bucket in {bad[:3]}")
            self.scrapes += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        for t in self.threads:
            t.join()


def main():
    daemon_binary, docs_path = test_arguments(__doc__, 2)
    require_tools("prometheus", "promtool", "bpftool")

    workdir = scratch_dir("e2e")
    # The held connections' server port, reserved against the other tests: the only value of
    # the port label, so that the gauge's series of it counts these sockets alone (sockets of
    # other network namespaces are counted under "other"). max_series at its maximum: the
    # cgroup label's series of every other process's connections on the host share it.
    held_port = free_port()
    with Daemon(daemon_binary, f"labels:\n  max_series: 100000\n  port:\n"
                f"    ports: [{held_port}]\n", workdir) as daemon:
        target = daemon.target
        _, exposition = http_get(f"http://{target}/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=exposition,
                               capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"promtool check metrics: {check.stdout}{check.stderr}")

        documented = open(docs_path).read()
        exported = {line.split()[2] for line in exposition.splitlines()
                    if line.startswith("# TYPE ")}
        missing = sorted(name for name in exported if f"`{name}`" not in documented)
        if missing:
            fail(f"exported but not documented in {docs_path}: {missing}")

        with Prometheus(workdir, scrape_every_second(target)) as prometheus:
            prometheus_url = prometheus.url
            wait_for("Prometheus to scrape the daemon",
                     lambda: query(prometheus_url, 'up{job="tcpstatesd"}') == 1, timeout=60)

            connected = ('sum(tcpstates_transitions_total'
                         '{from_state="SYN_SENT",to_state="ESTABLISHED"})')
            observed = ('sum(tcpstates_state_duration_seconds_count'
                        '{state="SYN_SENT",next_state="ESTABLISHED"})')
            established_v6 = ('sum(tcpstates_sockets{family="ipv6",state="ESTABLISHED",'
                              f'port="{held_port}"}})')
            # Baselines once a scrape has seen the series (they are exported from the start).
            wait_for("the first scrape of the transition series",
                     lambda: sample(prometheus_url, connected) is not None)
            base_connected = query(prometheus_url, connected)
            base_observed = query(prometheus_url, observed)

            with ConcurrentScrapes(target) as scrapes:
                held = Connections(HELD_OPEN, "ipv6", port=held_port)
                connections(CONNECTIONS, "ipv4")
            if scrapes.errors:
                fail("; ".join(scrapes.errors))
            if scrapes.scrapes == 0:
                fail("no scrape completed while the connections ran")
            # Both ends of each held connection are ESTABLISHED sockets.
            wait_for(f"{2 * HELD_OPEN} ipv6 ESTABLISHED sockets on port {held_port}",
                     lambda: query(prometheus_url, established_v6) == 2 * HELD_OPEN,
                     seen=lambda: query(prometheus_url, established_v6))
            held.close()

            total = CONNECTIONS + HELD_OPEN
            wait_for(f"SYN_SENT -> ESTABLISHED to grow by {total}",
                     lambda: query(prometheus_url, connected) - base_connected >= total)
            wait_for(f"its histogram _count to grow by {total}",
                     lambda: query(prometheus_url, observed) - base_observed >= total)
            wait_for(f"no ipv6 ESTABLISHED socket on port {held_port} left",
                     lambda: query(prometheus_url, established_v6) == 0,
                     seen=lambda: query(prometheus_url, established_v6))
            lost = query(prometheus_url, "sum(tcpstatesd_events_lost_total)")
            if lost != 0:
                fail(f"{lost} events lost at this tiny rate")
            print(f"connections: {total}; concurrent consistent scrapes: {scrapes.scrapes}; "
                  f"SYN_SENT->ESTABLISHED grew by "
                  f"{query(prometheus_url, connected) - base_connected:.0f}, histogram count by "
                  f"{query(prometheus_url, observed) - base_observed:.0f}; ipv6 ESTABLISHED gauge "
                  f"of port {held_port}: {2 * HELD_OPEN} while held, 0 after")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A fleet on one machine (docs/operations.md, "Running a fleet"): two daemons in two network
namespaces stand for two hosts, each serving /metrics on its own address; one Prometheus
scrapes both and remote-writes everything, native histograms included, to a second one, the
central store, started with --web.enable-remote-write-receiver, which evaluates the shipped
rules file. Both run with --enable-feature=native-histograms.

Usage: fleet_test.py TCPSTATESD_BINARY RULES_YML

In each host a server on the same service port accepts connections from a client of that
host, held ESTABLISHED until the checks are done, so that no count can move meanwhile. Then:
- the central store has every host's series under its own `instance`, with the values each
  daemon serves itself (its own /metrics, read once the counts stopped moving), and the
  connects' durations as native histograms that count every connect;
- the shipped per-host recording rules evaluate there for each host, and the fleet rules
  (job_family_port:*) are the sums of the per-host ones at the same evaluation.

Both daemons run on one kernel, whose programs see every network namespace: each counts the
other host's connections too. That does not matter here: what is checked is that the central
store gets exactly what each daemon serves, and sums it right.
"""
import math
import os
import subprocess
import sys

from e2e_support import (Daemon, Prometheus, fail, free_port, in_own_network_namespace,
                         scratch_dir, test_arguments, wait_for)

HOSTS = 2
# Connections each host makes in the first and in the second round.
ROUNDS = (3, 4)
DAEMON_PORT = 9977
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcp_peer.py")
CONNECTED = 'tcpstates_transitions_total{{port="{port}",from_state="SYN_SENT",to_state="ESTABLISHED"}}'
CONNECT_DURATIONS = ('tcpstates_state_duration_seconds{{port="{port}",state="SYN_SENT",'
                     'next_state="ESTABLISHED"}}')
# The durations per service port too, so that the test's connects have series of their own,
# and as native histograms. Each daemon counts every namespace's traffic, and a duration series
# costs 30 samples of labels.max_series: at its default (1000), the host's other ports can
# take the room of the test's own (folded into "other"). At its maximum every series has room.
DAEMON_CONFIG = ("labels:\n  max_series: 100000\n"
                 "  port:\n    families: [transitions, state_durations]\n"
                 "metrics:\n  native_histograms:\n    enabled: true\n")
NATIVE = "--enable-feature=native-histograms"


class Host:
    """A network namespace joined to the test's by a veth pair: the test's side has
    10.231.N.1, the host's 10.231.N.2."""

    def __init__(self, number):
        self.name = f"tcpstatesd-fleet-{os.getpid()}-{number}"
        self.address = f"10.231.{number}.2"
        outside, inside = f"fleet{number}o", f"fleet{number}i"
        run(["ip", "netns", "add", self.name])
        run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside,
             "netns", self.name])
        run(["ip", "addr", "add", f"10.231.{number}.1/24", "dev", outside])
        run(["ip", "link", "set", outside, "up"])
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{self.address}/24", "dev", inside],
                        ["ip", "link", "set", inside, "up"]):
            run(self.exec(command))

    def exec(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self):
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def peer(host, role, port, count, expect):
    """tcp_peer.py in `host`, once it printed `expect`."""
    process = subprocess.Popen(host.exec([sys.executable, PEER, role, str(port), str(count)]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().strip()
    if line != expect:
        fail(f"tcp_peer.py {role} in {host.name} printed {line!r}, expected {expect!r}")
    return process


def served_total(daemon, port):
    """The SYN_SENT -> ESTABLISHED transitions of the service port that the daemon serves,
    summed over the other labels."""
    return sum(value for key, value in daemon.metrics().items()
               if key.startswith("tcpstates_transitions_total{") and f'port="{port}"' in key
               and 'from_state="SYN_SENT"' in key and 'to_state="ESTABLISHED"' in key)


def by_instance(vector):
    return {dict(labels)["instance"]: value for labels, value in vector.items()}


def main():
    binary, rules = test_arguments(__doc__, 2)
    in_own_network_namespace()
    workdir = scratch_dir("fleet")
    service_port = free_port()
    hosts, daemons, peers = [], [], []
    try:
        for number in range(1, HOSTS + 1):
            host = Host(number)
            hosts.append(host)
            daemon_dir = os.path.join(workdir, host.name)
            os.makedirs(daemon_dir)
            daemons.append(Daemon(binary, DAEMON_CONFIG, daemon_dir, wrapper=host.exec([]),
                                  target=f"{host.address}:{DAEMON_PORT}"))
        targets = ", ".join(f'"{d.target}"' for d in daemons)
        central_dir = os.path.join(workdir, "central")
        edge_dir = os.path.join(workdir, "edge")
        os.makedirs(central_dir)
        os.makedirs(edge_dir)
        with Prometheus(central_dir, f"global:\n  evaluation_interval: 1s\n"
                                     f"rule_files: [{rules}]\n",
                        flags=["--web.enable-remote-write-receiver", NATIVE]) as central, \
                Prometheus(edge_dir, f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tcpstatesd
    static_configs:
      - targets: [{targets}]
remote_write:
  - url: {central.url}/api/v1/write
    send_native_histograms: true
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
""", flags=[NATIVE]) as edge:
            connected = CONNECTED.format(port=service_port)
            servers = []
            for host in hosts:
                servers.append(peer(host, "serve", service_port, sum(ROUNDS), "ready"))
                peers.append(servers[-1])
                peers.append(peer(host, "connect", service_port, ROUNDS[0], "connected"))
            # The second round after the central store has the first: the counters grow
            # between two samples, so that the rules' rates are above 0.
            wait_for("the central store to have the first connects of every host",
                     lambda: len(central.query(f"sum by (instance) ({connected})")) == HOSTS,
                     timeout=60, seen=lambda: central.query(f"sum by (instance) ({connected})"))
            for host, server in zip(hosts, servers):
                peers.append(peer(host, "connect", service_port, ROUNDS[1], "connected"))
                if server.stdout.readline().strip() != "accepted":
                    fail(f"the server in {host.name} did not accept {sum(ROUNDS)} connections")
            # Every connection is held ESTABLISHED: the daemons' counts cannot move any more.
            expected = {d.target: served_total(d, service_port) for d in daemons}
            made = HOSTS * sum(ROUNDS)
            if set(expected.values()) != {made}:
                fail(f"each daemon should count the {made} connects of both hosts (one "
                     f"kernel): {expected}")
            wait_for("the central store to have each host's connects as the host serves them",
                     lambda: by_instance(central.query(f"sum by (instance) ({connected})"))
                     == expected,
                     timeout=60, seen=lambda: by_instance(
                         central.query(f"sum by (instance) ({connected})")))
            # The edge scraped the native histograms (the protobuf format) and sent them on.
            native_counts = (f"histogram_count(sum by (instance) "
                             f"({CONNECT_DURATIONS.format(port=service_port)}))")
            wait_for("the central store to have each host's connect durations as native "
                     "histograms, every connect in them",
                     lambda: by_instance(central.query(native_counts))
                     == {target: made for target in expected},
                     timeout=60, seen=lambda: (central.query(native_counts), {
                         d.target: d.metrics().get("tcpstatesd_native_buckets_lost_total")
                         for d in daemons}))
            edge.check_running()

            per_host = f'instance_family_port:tcpstates_connect_attempts:rate5m{{port="{service_port}"}}'
            fleet = f'job_family_port:tcpstates_connect_attempts:rate5m{{port="{service_port}"}}'
            # Above 0 once an evaluation saw both rounds' samples: the remote write delivers
            # them a batch (up to a second) after the edge scraped them.
            wait_for("the central store to evaluate the per-host rule for every host, after "
                     "both rounds",
                     lambda: (lambda rates: set(rates) == set(expected)
                              and all(rate > 0 for rate in rates.values()))(
                         by_instance(central.query(per_host))),
                     timeout=60, seen=lambda: central.query(per_host))
            # The fleet series' latest evaluation: the per-host ones were recorded in the same.
            at = max(central.query(f"timestamp({fleet})").values())
            hosts_rates = by_instance(central.query(per_host, at))
            fleet_rate = central.query(fleet, at)
            if len(fleet_rate) != 1 or not all(v > 0 for v in hosts_rates.values()):
                fail(f"per host {hosts_rates}, fleet {fleet_rate}: one fleet series and every "
                     f"host's rate above 0 expected")
            total = next(iter(fleet_rate.values()))
            if not math.isclose(total, sum(hosts_rates.values()), rel_tol=1e-12):
                fail(f"the fleet's connect rate {total} is not the sum of the hosts' "
                     f"{hosts_rates}")
            print(f"hosts {sorted(expected)}: {sum(ROUNDS)} connections held each; each daemon "
                  f"serves {sorted(expected.values())} connects of port {service_port}, the "
                  f"central store has the same; connect rate per host {hosts_rates}, fleet "
                  f"{total:.4f} (their sum)")
        for process in peers:
            process.stdin.close()
        for process in peers:
            process.wait(timeout=30)
        for daemon in daemons:
            daemon.stop()
    finally:
        for daemon in daemons:
            daemon.kill()
        for process in peers:
            process.kill()
        for host in hosts:
            host.delete()
    print("PASS")


if __name__ == "__main__":
    main()

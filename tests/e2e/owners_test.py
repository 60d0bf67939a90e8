#!/usr/bin/env python3
"""The owner of every socket and the `port` and `cgroup` labels, against the real kernel.

In a network namespace of its own, a server and a client run as processes of their own, each
in a cgroup the test makes (web.service and client.scope under one parent in the cgroup2
mount). The daemon runs with both labels on the transitions and the gauge, and
`tcpstatesd trace --json --cgroup` runs beside it. The test asserts:

1. trace: every transition of the server's sockets (its listener, and the accepted sockets,
   whose transitions mostly run in softirq) names the server's pid, command and cgroup path;
   every transition of the client's sockets names the client's;
2. /metrics while the connections are held: tcpstates_sockets has exactly N ESTABLISHED
   sockets for each of port=PORT,cgroup="web.service" and port=PORT,cgroup="client.scope",
   and the one listener;
3. /metrics after the close: each transition of both lives exactly N times (the listener's
   once) under its unit's name and port=PORT;
4. a reload that adds the cgroup label to the durations keeps every transition count, and the
   next round of connections counts on (2N), with labelled durations.

Usage: owners_test.py BINARY
"""
import json
import os
import signal
import subprocess
import sys
import threading

from e2e_support import (Cgroups, Daemon, fail, free_port, in_own_network_namespace, sample,
                         scratch_dir, test_arguments, wait_for)

N = 5
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcp_peer.py")
# max_series at its maximum: the labelled series are shared with every other process's
# connections on the host (the tracepoints see every network namespace), which with other tests
# beside this one could fill the default 1000 and fold this test's new series into "other".
# The budget itself is cardinality_test.py's subject.
CONFIG = """labels:
  max_series: 100000
  port:
    families: [transitions, sockets]
  cgroup:
    families: [transitions, sockets]{durations}
"""
SERVER_LIFE = [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"),
               ("ESTABLISHED", "CLOSE_WAIT"), ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSE")]
CLIENT_LIFE = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
               ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE")]


class Trace:
    """`tcpstatesd trace --json --cgroup`, its lines collected by a thread."""

    def __init__(self, binary):
        self.process = subprocess.Popen([binary, "trace", "--json", "--cgroup"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.lines = []
        self.reader = threading.Thread(target=self.read)
        self.reader.start()

    def read(self):
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def on_port(self, port):
        return [e for e in self.lines if port in (e["lport"], e["rport"])]

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        if self.process.wait(timeout=10) != 0:
            fail(f"trace exited with {self.process.returncode}: {self.process.stderr.read()}")
        self.reader.join()


def one_round(cgroups, port):
    """N connections from the client's cgroup to the server's, held, then closed by the
    client; returns (server pid, client pid) once both have exited."""
    server = subprocess.Popen(cgroups.wrap("web.service", [sys.executable, PEER, "serve",
                                                          str(port), str(N)]),
                              stdout=subprocess.PIPE, text=True)
    if server.stdout.readline() != "ready\n":
        fail("the server did not start")
    client = subprocess.Popen(cgroups.wrap("client.scope", [sys.executable, PEER, "connect",
                                                           str(port), str(N)]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if client.stdout.readline() != "connected\n" or server.stdout.readline() != "accepted\n":
        fail("the connections were not made")
    return server, client


def check_trace(trace, port, pids, comms, cgroups):
    lines = trace.on_port(port)
    server_side = [e for e in lines if e["lport"] == port]
    client_side = [e for e in lines if e["lport"] != port]
    if len(server_side) != 2 + len(SERVER_LIFE) * N or len(client_side) != len(CLIENT_LIFE) * N:
        fail(f"trace: {len(server_side)} server and {len(client_side)} client lines on port "
             f"{port}, expected {2 + len(SERVER_LIFE) * N} and {len(CLIENT_LIFE) * N}")
    for side, events in (("server", server_side), ("client", client_side)):
        unit = "web.service" if side == "server" else "client.scope"
        want = (pids[side], comms[side], cgroups.cgroup_path(unit))
        for e in events:
            if (e["pid"], e["comm"], e["cgroup"]) != want:
                fail(f"trace: the {side}'s {e['old_state']} -> {e['new_state']} names "
                     f"{(e['pid'], e['comm'], e['cgroup'])}, expected {want}")
    print(f"trace: {len(lines)} lines on port {port}, each naming its socket's owner")


def check_transitions(values, port, rounds, what):
    expected = {("web.service", f, t): rounds * N for f, t in SERVER_LIFE}
    expected.update({("web.service", "CLOSE", "LISTEN"): rounds,
                     ("web.service", "LISTEN", "CLOSE"): rounds})
    expected.update({("client.scope", f, t): rounds * N for f, t in CLIENT_LIFE})
    for (unit, from_state, to_state), count in expected.items():
        got = sample(values, "tcpstates_transitions_total", port=port, cgroup=unit,
                     from_state=from_state, to_state=to_state)
        if got != count:
            seen = {k: v for k, v in values.items() if k.startswith(
                "tcpstates_transitions_total{") and f'from_state="{from_state}"' in k and
                f'to_state="{to_state}"' in k}
            fail(f"{what}: {from_state} -> {to_state} of {unit} on port {port}: {got}, "
                 f"expected {count}; all such series: {seen}")
    print(f"{what}: every transition of both units counted exactly under its name and port")


def wait_for_last_transitions(daemon, port, rounds):
    """Until the last transitions of `rounds` rounds are counted: after them no socket of the
    port can move. Each accepted socket's LAST_ACK -> CLOSE comes with the client's last ACK, in
    softirq, and may come after the server has exited and closed its listener: the listener's
    close is not the last."""
    def counted():
        values = daemon.metrics()
        return [sample(values, "tcpstates_transitions_total", port=port, cgroup="web.service",
                       from_state=from_state, to_state="CLOSE")
                for from_state in ("LAST_ACK", "LISTEN")]
    wait_for(f"the last transitions of {rounds} round(s)",
             lambda: counted() == [rounds * N, rounds], timeout=10)


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    workdir = scratch_dir("owners")
    port = free_port()
    with Cgroups("owners", ["web.service", "client.scope"]) as cgroups, \
            Daemon(binary, CONFIG.format(durations=""), workdir) as daemon:
        trace = Trace(binary)
        wait_for("trace to attach", lambda: trace.process.poll() is not None or any(
            e["lport"] == daemon.port for e in trace.lines) or daemon.metrics() is None)
        server, client = one_round(cgroups, port)
        pids = {"server": server.pid, "client": client.pid}
        comms = {side: open(f"/proc/{pid}/comm").read().strip() for side, pid in pids.items()}

        def held(values):
            return [sample(values, "tcpstates_sockets", state="ESTABLISHED", port=port,
                           cgroup=unit) for unit in ("web.service", "client.scope")] + [
                sample(values, "tcpstates_sockets", state="LISTEN", port=port,
                       cgroup="web.service")]
        wait_for(f"the gauge to show {N} connections of each unit and the listener",
                 lambda: held(daemon.metrics()) == [N, N, 1], timeout=10)
        print(f"gauge: {N} ESTABLISHED for each unit on port {port}, 1 LISTEN of web.service")

        client.stdin.close()
        if client.wait(timeout=30) != 0 or server.wait(timeout=30) != 0:
            fail("the client or the server failed")
        wait_for_last_transitions(daemon, port, 1)
        check_transitions(daemon.metrics(), port, 1, "after one round")
        wait_for("trace's lines", lambda: len(trace.on_port(port)) >= 2 + 10 * N, timeout=10)
        trace.stop()
        check_trace(trace, port, pids, comms, cgroups)

        # A reload that changes the labels of one family keeps the others' counts.
        daemon.write_config(CONFIG.format(durations="\n    families: [transitions, sockets, "
                                          "state_durations]").replace(
            "    families: [transitions, sockets]\n    families:", "    families:"))
        before = daemon.metrics()["tcpstatesd_config_last_reload_success_timestamp_seconds"]
        daemon.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: daemon.metrics()[
            "tcpstatesd_config_last_reload_success_timestamp_seconds"] > before)
        check_transitions(daemon.metrics(), port, 1, "after the reload")
        server, client = one_round(cgroups, port)
        client.stdin.close()
        if client.wait(timeout=30) != 0 or server.wait(timeout=30) != 0:
            fail("the client or the server failed (second round)")
        wait_for_last_transitions(daemon, port, 2)
        values = daemon.metrics()
        check_transitions(values, port, 2, "after a second round")
        durations = sample(values, "tcpstates_state_duration_seconds_count", cgroup="client.scope",
                           state="ESTABLISHED", next_state="FIN_WAIT1")
        if durations != N:
            budget = {k: v for k, v in values.items() if k.startswith(
                ("tcpstatesd_series_overflows_total", "tcpstatesd_labelled_series",
                 "tcpstatesd_label_value"))}
            fail(f"durations with the cgroup label after the reload: {durations}, expected {N}; "
                 f"the label budget: {budget}")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

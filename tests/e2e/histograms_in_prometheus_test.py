#!/usr/bin/env python3
"""End to end: a real Prometheus stores the native histograms and the exemplars.

Usage: histograms_in_prometheus_test.py TCPSTATESD_BINARY

One daemon (native histograms on, durations labelled by the test's two ports), in a network
namespace of its own, scraped every second by two Prometheus 2.42 servers with
--enable-feature=exemplar-storage: one as installed (it asks for OpenMetrics, so it gets the
classic buckets), one with native-histograms too (it asks for protobuf).

- Exemplars: the test makes fast connections to one port and one it holds open for HOLD
  seconds; both servers' /api/v1/query_exemplars must return, for the client side's
  ESTABLISHED -> FIN_WAIT1 series of the port, an exemplar naming that connection's addresses
  and ports, at least HOLD long.
- Native histograms: SLOW_SYNS connects to the other port, each SYN dropped on a full accept
  queue and answered on its retransmission, about 1 s later. The native server's
  histogram_quantile(0.5, rate(tcpstates_state_duration_seconds{state="SYN_SENT",...}[1m]))
  must be within one bucket's width of the median connect time the test measured; the other
  server has the classic _bucket series of the same observations.
"""
import errno
import json
import os
import selectors
import shutil
import socket
import statistics
import time
import urllib.parse
import urllib.request

from e2e_support import (Daemon, Prometheus, fail, free_port, in_own_network_namespace,
                         scratch_dir, scrape_every_second, test_arguments, wait_for)

FAST = 10
HOLD = 1.5  # seconds: the slow connection's time in ESTABLISHED, far above the fast ones'
SLOW_SYNS = 3
SCHEMA = 3  # the daemon's default: buckets 2^(2^-3) = 2^(1/8) wide
BUCKET_FACTOR = 2 ** (2 ** -SCHEMA)


def query_exemplars(server, selector, start):
    params = {"query": selector, "start": f"{start:.3f}", "end": f"{time.time() + 60:.3f}"}
    url = f"{server.url}/api/v1/query_exemplars?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.loads(response.read())
    if result["status"] != "success":
        fail(f"query_exemplars {selector}: {result}")
    return [e for series in result["data"] for e in series["exemplars"]]


def connection(port, hold=0.0):
    """A connection to 127.0.0.1:port held `hold` seconds, closed by the client first;
    returns the client's local port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client_port = client.getsockname()[1]
        time.sleep(hold)  # the client's time in ESTABLISHED: what makes it slow
    return client_port


def listen_overflows():
    """TcpExt ListenOverflows of the test's network namespace: SYNs dropped on a full accept
    queue, ours alone."""
    with open("/proc/net/netstat") as f:
        header, values = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(header, values))["ListenOverflows"])


def slow_handshakes(listener, count):
    """`count` connects to `listener` (listening with backlog count - 1: its accept queue holds
    count connections, already there), each SYN dropped as the queue is full; once the kernel
    counted the drops, the test accepts the queued ones, so each SYN's retransmission, after
    the initial RTO (1 s), is answered. Returns each connect's duration as the test saw it."""
    overflows = listen_overflows()
    clients = {}
    selector = selectors.DefaultSelector()
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        started = time.monotonic()
        if client.connect_ex(listener.getsockname()) != errno.EINPROGRESS:
            fail("a connect to the full accept queue did not wait for a SYN-ACK")
        clients[client] = started
        selector.register(client, selectors.EVENT_WRITE)
    # Within 0.8 s: the room must be made before the retransmissions, 1 s after the SYNs (a
    # retransmission dropped too would be answered 2 s later still).
    wait_for(f"the kernel to drop {count} SYNs on the full accept queue",
             lambda: listen_overflows() - overflows >= count, timeout=0.8, interval=0.01,
             seen=lambda: f"{listen_overflows() - overflows} ListenOverflows")
    for _ in range(count):
        listener.accept()[0].close()
    durations = []
    deadline = time.monotonic() + 10
    while len(durations) < count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            client = key.fileobj
            durations.append(time.monotonic() - clients[client])
            selector.unregister(client)
            error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                fail(f"a slow connect failed: {os.strerror(error)}")
    if len(durations) < count:
        fail(f"{count - len(durations)} of {count} slow connects still not done after 10 s")
    for client in clients:
        client.close()
    return durations


def check_exemplars(servers, port, start, slow_port):
    selector = ('{__name__=~"tcpstates_state_duration_seconds(_bucket)?",'
                f'port="{port}",state="ESTABLISHED",next_state="FIN_WAIT1"}}')
    expected = {"local": f"127.0.0.1:{slow_port}", "remote": f"127.0.0.1:{port}"}
    for name, server in servers.items():
        def slow_one():
            server.check_running()
            return [e for e in query_exemplars(server, selector, start)
                    if {k: e["labels"].get(k) for k in expected} == expected]
        found = wait_for(f"the {name} server's exemplar of the slow connection {expected}",
                         slow_one, timeout=30,
                         seen=lambda: query_exemplars(server, selector, start))
        if float(found[0]["value"]) < HOLD:
            fail(f"{name}: the slow connection's exemplar is {found[0]['value']} s, "
                 f"held {HOLD} s")
        print(f"{name}: {found[0]}")


def one_value(server, expression):
    values = list(server.query(expression).values())
    return values[0] if len(values) == 1 else None


def check_native_median(daemon, servers, port):
    native, classic = servers["protobuf"], servers["openmetrics"]
    series = f'state="SYN_SENT",next_state="ESTABLISHED",port="{port}"'
    count_of = {native: f"histogram_count(tcpstates_state_duration_seconds{{{series}}})",
                classic: f'tcpstates_state_duration_seconds_bucket{{{series},le="+Inf"}}'}
    listener = socket.create_server(("127.0.0.1", port), backlog=SLOW_SYNS - 1)
    # Fast connects fill the accept queue first: the series exists in both servers before the
    # slow ones, so that rate() sees only them as its increase.
    queued = [socket.create_connection(("127.0.0.1", port), timeout=10)
              for _ in range(SLOW_SYNS)]
    try:
        for name, server in (("native", native), ("classic", classic)):
            wait_for(f"the {name} server to store the {SLOW_SYNS} fast SYN_SENT observations",
                     lambda: one_value(server, count_of[server]) == SLOW_SYNS, timeout=30,
                     seen=lambda: server.query(count_of[server]))
        durations = slow_handshakes(listener, SLOW_SYNS)
    finally:
        for client in queued:
            client.close()
        listener.close()
    measured = statistics.median(durations)
    print(f"slow connects: {[round(d, 4) for d in durations]} s, median {measured:.4f} s")
    # On a timeout: whether the daemon missed the observations or a server did.
    def seen(server):
        samples = daemon.metrics()
        own = {name: value for name, value in samples.items()
               if name.startswith("tcpstates_state_duration_seconds_count")
               and 'state="SYN_SENT"' in name and f'port="{port}"' in name}
        losses = {name: value for name, value in samples.items()
                  if value and any(word in name for word in ("lost", "unknown_start", "fail",
                                                              "overflow", "mismatch"))}
        return (f"{server.query(count_of[server])}; the classic server: "
                f"{classic.query(count_of[classic])}; up: {server.query('up')}; the daemon's "
                f"count: {own}; its losses and unknown starts: {losses}")

    for name, server in (("native", native), ("classic", classic)):
        wait_for(f"the {name} server to store the {SLOW_SYNS} slow SYN_SENT observations",
                 lambda: one_value(server, count_of[server]) == 2 * SLOW_SYNS, timeout=30,
                 seen=lambda: seen(server))
    quantile = one_value(native, "histogram_quantile(0.5, rate(tcpstates_state_duration_"
                                 f"seconds{{{series}}}[1m]))")
    # The kernel's durations (SYN to the SYN-ACK of the retransmission: the initial RTO, 1 s,
    # plus the timer wheel's rounding, tens of ms) fall in native buckets (b, b * 2^(1/8)], the
    # quantile interpolated inside the median's; the test's durations are the same plus the
    # wake-up of a poll (milliseconds, the machine loaded), so the medians are at most one
    # bucket's width apart.
    if quantile is None or not measured / BUCKET_FACTOR <= quantile <= measured * BUCKET_FACTOR:
        fail(f"the native histogram's median SYN_SENT duration is {quantile} s; the test "
             f"measured {measured:.4f} s (allowed: a factor {BUCKET_FACTOR:.4f} either way)")
    print(f"native histogram_quantile(0.5): {quantile:.4f} s")
    if one_value(classic, f"count(tcpstates_state_duration_seconds_bucket{{{series}}})") is None:
        fail("the classic server has no _bucket series of the SYN_SENT durations")


def main():
    daemon_binary, = test_arguments(__doc__, 1)
    if not shutil.which("prometheus"):
        fail("prometheus is not installed (.ci/install-deps installs it)")
    in_own_network_namespace()
    workdir = scratch_dir("e2e-histograms-in-prometheus")
    port, syn_port = free_port(), free_port()
    config = ("labels:\n  port:\n    families: [state_durations]\n"
              f"    ports: [{port}, {syn_port}]\n"
              "metrics:\n  native_histograms:\n    enabled: true\n")
    listener = socket.create_server(("127.0.0.1", port), backlog=FAST + 1)
    with Daemon(daemon_binary, config, workdir) as daemon:
        servers = {}
        try:
            for name, features in (("openmetrics", "exemplar-storage"),
                                   ("protobuf", "exemplar-storage,native-histograms")):
                os.makedirs(os.path.join(workdir, name))
                servers[name] = Prometheus(os.path.join(workdir, name),
                                           scrape_every_second(daemon.target),
                                           (f"--enable-feature={features}",))
            for name, server in servers.items():
                wait_for(f"the {name} Prometheus to scrape the daemon",
                         lambda: server.query("up") and list(server.query("up").values()) == [1],
                         timeout=60, seen=lambda: server.check_running())
            start = time.time()
            for _ in range(FAST):
                connection(port)
            slow_port = connection(port, HOLD)
            # Accepted by the kernel (backlog): the server side closes when the listener does.
            check_native_median(daemon, servers, syn_port)
            check_exemplars(servers, port, start, slow_port)
        finally:
            for server in servers.values():
                server.stop()
            listener.close()
        daemon.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()

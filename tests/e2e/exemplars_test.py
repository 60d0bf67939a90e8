#!/usr/bin/env python3
"""End to end: a connection made slow on purpose is the exemplar a real Prometheus stores.

Usage: exemplars_test.py TCPSTATESD_BINARY

One daemon (durations labelled by the test's port), scraped every second by two Prometheus
2.42 servers with --enable-feature=exemplar-storage: one as installed (it asks for
OpenMetrics), one with native-histograms too (it asks for protobuf). The test makes fast
connections to its port and one it holds open for HOLD seconds; both servers'
/api/v1/query_exemplars must return, for the client side's ESTABLISHED -> FIN_WAIT1 series of
the port, an exemplar naming that connection's addresses and ports, at least HOLD long.
"""
import json
import os
import shutil
import socket
import time
import urllib.parse
import urllib.request

from e2e_support import Daemon, Prometheus, fail, free_port, scratch_dir, test_arguments, wait_for

FAST = 10
HOLD = 1.5  # seconds: the slow connection's time in ESTABLISHED, far above the fast ones'


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


def main():
    daemon_binary, = test_arguments(__doc__, 1)
    if not shutil.which("prometheus"):
        fail("prometheus is not installed (.ci/install-deps installs it)")
    workdir = scratch_dir("e2e-exemplars")
    port = free_port()
    config = ("labels:\n  port:\n    families: [state_durations]\n"
              f"    ports: [{port}]\n")
    listener = socket.create_server(("127.0.0.1", port), backlog=FAST + 1)
    with Daemon(daemon_binary, config, workdir) as daemon:
        scrape = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                  "scrape_configs:\n  - job_name: tcpstatesd\n"
                  f"    static_configs:\n      - targets: ['{daemon.target}']\n")
        servers = {}
        try:
            for name, features in (("openmetrics", "exemplar-storage"),
                                   ("protobuf", "exemplar-storage,native-histograms")):
                os.makedirs(os.path.join(workdir, name))
                servers[name] = Prometheus(os.path.join(workdir, name), scrape,
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
            selector = ('{__name__=~"tcpstates_state_duration_seconds(_bucket)?",'
                        f'port="{port}",state="ESTABLISHED",next_state="FIN_WAIT1"}}')
            expected = {"local": f"127.0.0.1:{slow_port}", "remote": f"127.0.0.1:{port}"}
            for name, server in servers.items():
                def slow_one():
                    server.check_running()
                    return [e for e in query_exemplars(server, selector, start)
                            if {k: e["labels"].get(k) for k in expected} == expected]
                found = wait_for(f"the {name} server's exemplar of the slow connection "
                                 f"{expected}", slow_one, timeout=30,
                                 seen=lambda: query_exemplars(server, selector, start))
                if float(found[0]["value"]) < HOLD:
                    fail(f"{name}: the slow connection's exemplar is {found[0]['value']} s, "
                         f"held {HOLD} s")
                print(f"{name}: {found[0]}")
        finally:
            for server in servers.values():
                server.stop()
            listener.close()
        daemon.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()

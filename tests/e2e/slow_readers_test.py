#!/usr/bin/env python3
"""Slow readers of a large scrape: the daemon's memory is bounded by the size of one body,
not by the number of clients.

Usage: slow_readers_test.py TCPSTATESD_BINARY

In a network namespace of its own, the daemon runs with labels.max_series at its upper limit
(100000) and `port` on every family; the test connects once to each of PORTS ports so that
the labelled series fill it, and measures one uncompressed body (BODY, about 12 MB). Then
READERS clients, each from a source address of its own (127.0.0.10 and up), request
/metrics without gzip and read it at RATE bytes per second for SECONDS, reconnecting when
the server cuts them off (write_timeout_seconds, 30 s by default). The daemon's peak RSS
over that time (VmHWM, reset just before) must stay within REST + K x BODY, REST being its
RSS before the readers, where K is the bound docs/operations.md ("Securing the endpoint")
derives: at most 4 uncompressed bodies and 4 gzipped ones (each about 1/16 of a body) held
for readers, plus one render in progress (about 2.5 bodies: the collected families and the
text being built). Before bodies were shared, each reader held its own copy: 20 x BODY.
The bound holds for RSS because the daemon has one malloc arena (daemon/main.cpp): with one
per thread, each HTTP thread that had rendered kept its render's memory resident, and REST and
the peak varied with which threads had rendered (rest + 1.05 to 8.38 bodies, REST 126 to
200 MiB; with one arena rest + 3.51 bodies in three runs out of three, REST 38.5 MiB).
"""
import os
import socket
import threading
import time
import urllib.request

from e2e_support import (Daemon, connections_to_new_ports, fail, in_own_network_namespace,
                         sample, scratch_dir, status_kib, test_arguments, wait_for)

PORTS = 1000
READERS = 20
RATE = 100 * 1024
SECONDS = 20
K = 4 + 4 / 16 + 2.5
CONFIG = """labels:
  max_series: 100000
  port:
    families: [transitions, state_durations, sockets, closes, resets, retransmits]
    max_values: 10000
"""


class SlowReader(threading.Thread):
    """Reads /metrics (identity) from `source` at RATE bytes per second until `stop`."""

    def __init__(self, port, source, stop):
        super().__init__()
        self.port, self.source, self.stop = port, source, stop
        self.received = 0
        self.requests = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            try:
                with socket.socket() as s:
                    s.settimeout(10)
                    s.bind((self.source, 0))
                    s.connect(("127.0.0.1", self.port))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                    self.requests += 1
                    while not self.stop.is_set():
                        started = time.monotonic()
                        chunk = s.recv(RATE // 10)
                        if not chunk:
                            break  # cut off by the write timeout: ask again, as an attacker would
                        self.received += len(chunk)
                        self.stop.wait(max(0.0, len(chunk) / RATE - (time.monotonic() - started)))
            except OSError as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                self.stop.wait(0.5)


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    with Daemon(binary, CONFIG, scratch_dir("slow-readers")) as daemon:
        pid = daemon.process.pid
        connections_to_new_ports(PORTS)
        wait_for("the labelled series to reach labels.max_series",
                 lambda: sample(daemon.metrics(), "tcpstatesd_series_overflows_total") > 0,
                 timeout=60)
        with urllib.request.urlopen(f"http://{daemon.target}/metrics", timeout=30) as r:
            body = len(r.read())
        for _ in range(3):  # the scrape path's allocations settle
            daemon.metrics()
        rest = status_kib(pid, "VmRSS")
        print(f"body {body} bytes uncompressed; daemon RSS at rest {rest} KiB")

        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        stop = threading.Event()
        readers = [SlowReader(daemon.port, f"127.0.0.{10 + i}", stop) for i in range(READERS)]
        for reader in readers:
            reader.start()
        time.sleep(SECONDS)  # the readers' time: the measurement spans it
        stop.set()
        for reader in readers:
            reader.join()
        peak = status_kib(pid, "VmHWM")

        received = sum(r.received for r in readers)
        requests = sum(r.requests for r in readers)
        errors = [e for r in readers for e in r.errors]
        print(f"{READERS} readers at {RATE} B/s for {SECONDS} s: {requests} requests, "
              f"{received} bytes received, errors: {errors[:3]}")
        # Each reader got its bytes at about its rate: the readers did hold their responses.
        if received < READERS * RATE * SECONDS / 2:
            fail(f"the readers received only {received} bytes")
        bound = rest + K * body / 1024
        growth_bodies = (peak - rest) * 1024 / body
        print(f"peak RSS {peak} KiB = rest + {growth_bodies:.2f} bodies (bound: rest + {K} "
              f"bodies = {bound:.0f} KiB)")
        if os.environ.get("TCPSTATESD_SANITIZED") == "1":
            # Freed memory sits in AddressSanitizer's quarantine: RSS says nothing here.
            print("note: peak RSS not checked under the sanitizers")
        elif peak > bound:
            fail(f"peak RSS {peak} KiB exceeds rest + {K} bodies ({bound:.0f} KiB)")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

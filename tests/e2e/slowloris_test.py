#!/usr/bin/env python3
"""A slowloris from several addresses does not lock the scraper out.

Usage: slowloris_test.py TCPSTATESD_BINARY

For SECONDS, ATTACKERS x PER_ATTACKER connections (127.0.0.2 and up, each address at the
daemon's per-address limit of 16, together every one of its 64 connections) send a request
line and then one header line every TRICKLE seconds, never finishing the head; each one the
server closes is opened again at once. Meanwhile a scraper on 127.0.0.1 asks for /metrics
once a second (each scrape on its own, so a slow one does not delay the next) and must get
a 200 within SCRAPE_LIMIT seconds for at least 90% of them. The daemon runs with the default
web settings: the request head is due within 5 s of connecting, and when all 64 connections
are taken one without a head goes after 1 s (docs/operations.md, "Securing the endpoint").
Before the head deadline, each header line restarted the 10 s idle timeout and the scraper
got 0 of 6 scrapes. The test also checks that the attack did take all 64 connections (the
daemon's sockets with an attacker's address at the other end) and that the server closed
attackers.
"""
import os
import selectors
import socket
import sys
import threading
import time
import urllib.request

from e2e_support import Daemon, fail, scratch_dir, test_arguments

SECONDS = 35
ATTACKERS = 4
PER_ATTACKER = 16
TRICKLE = 7.5
# The attackers' addresses as /proc/net/tcp writes them: the four bytes as one number in host
# order, in hex.
ATTACKER_ADDRESSES = {
    f"{int.from_bytes(socket.inet_aton(f'127.0.0.{2 + a}'), sys.byteorder):08X}"
    for a in range(ATTACKERS)}
SCRAPE_LIMIT = 5.0
CONNECTION_LIMIT = 64


class Slowloris(threading.Thread):
    """Keeps ATTACKERS x PER_ATTACKER trickling connections open until `stop`."""

    def __init__(self, port, stop):
        super().__init__()
        self.port, self.stop = port, stop
        self.selector = selectors.DefaultSelector()
        self.closed_by_server = 0
        self.opened = 0

    def open(self, source):
        s = socket.socket()
        s.setblocking(False)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        try:
            s.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        except OSError:
            pass  # not connected yet: the first trickle sends it
        self.opened += 1
        self.selector.register(s, selectors.EVENT_READ, (source, time.monotonic() + TRICKLE))

    def run(self):
        for attacker in range(ATTACKERS):
            for _ in range(PER_ATTACKER):
                self.open(f"127.0.0.{2 + attacker}")
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                # Readable: the server closed it (it never answers an incomplete head).
                self.selector.unregister(key.fileobj)
                key.fileobj.close()
                self.closed_by_server += 1
                self.open(key.data[0])
            now = time.monotonic()
            for key in list(self.selector.get_map().values()):
                source, due = key.data
                if now >= due:
                    try:
                        key.fileobj.send(b"X-Trickle: 1\r\n")
                    except OSError:
                        pass
                    self.selector.modify(key.fileobj, selectors.EVENT_READ, (source, now + TRICKLE))
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def attackers_held(pid):
    """The connections from the attackers' addresses the daemon holds: its sockets (the inodes
    of its descriptors) whose peer in /proc/net/tcp is one of them. No baseline is needed, so
    the daemon's other connections (a readiness check closing, a scrape) do not count."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    with open("/proc/net/tcp") as table:
        next(table)
        return sum(1 for line in table
                   if (fields := line.split())[2].split(":")[0] in ATTACKER_ADDRESSES
                   and fields[9] in inodes)


def main():
    [binary] = test_arguments(__doc__, 1)
    with Daemon(binary, "", scratch_dir("slowloris")) as daemon:
        pid = daemon.process.pid
        url = f"http://127.0.0.1:{daemon.port}/metrics"
        stop = threading.Event()
        attack = Slowloris(daemon.port, stop)
        attack.start()

        results = []  # (second, elapsed or None, error)

        def scrape(second):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=SCRAPE_LIMIT) as r:
                    ok = r.status == 200 and b"tcpstatesd_build_info" in r.read()
                elapsed = time.monotonic() - started
                results.append((second, elapsed if ok else None, "" if ok else "bad answer"))
            except OSError as error:
                results.append((second, None, f"{type(error).__name__}: {error}"))

        most_held = 0
        scrapers = []
        start = time.monotonic()
        for second in range(SECONDS):
            # Scrape at each whole second after the start, sampling the daemon meanwhile.
            while time.monotonic() < start + second:
                most_held = max(most_held, attackers_held(pid))
                time.sleep(0.05)
            scrapers.append(threading.Thread(target=scrape, args=(second,)))
            scrapers[-1].start()
        for scraper in scrapers:
            scraper.join()
        stop.set()
        attack.join()

        results.sort()
        served = [r for r in results if r[1] is not None and r[1] <= SCRAPE_LIMIT]
        slowest = max((r[1] for r in served), default=0.0)
        print(f"slowloris: {attack.opened} connections opened from {ATTACKERS} addresses, "
              f"{attack.closed_by_server} closed by the server, at most {most_held} held by "
              f"the daemon at once")
        print(f"scraper: {len(served)} of {len(results)} scrapes served within {SCRAPE_LIMIT} s "
              f"(slowest {slowest:.2f} s); failures: "
              f"{[r for r in results if r not in served][:5]}")
        if most_held < CONNECTION_LIMIT:
            fail(f"the attack held at most {most_held} connections, not all "
                 f"{CONNECTION_LIMIT}: it did not test the lockout")
        if attack.closed_by_server == 0:
            fail("the server closed no trickling connection")
        if len(served) < 0.9 * SECONDS:
            fail(f"only {len(served)} of {SECONDS} scrapes were served within {SCRAPE_LIMIT} s")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

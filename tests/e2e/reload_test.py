#!/usr/bin/env python3
"""Reload and signals: the real daemon, reconfigured by SIGHUP while connections run.

Usage: reload_test.py TCPSTATESD_BINARY

1. Started with remote_ports [A]: connections to A are counted, to B are not.
2. SIGHUP with remote_ports [B]: from then on only B is counted; the reload gauge is 1 and
   its timestamp moves; the program was not re-attached (same BPF program id).
3. SIGHUP with a broken file: the daemon keeps running on the previous configuration
   (still counting B only), the gauge is 0, the log names file:line:column.
4. SIGHUP with a restart-only change (socket table size): refused, gauge 0, message says a
   restart is needed.
5. SIGTERM: exit 0 within a second, no BPF program of ours left.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from e2e_support import (fail, free_port, program_ids_of, require_root, scrape, stop_daemon,
                         wait_for)


class Listener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def connect_many(self, count):
        for _ in range(count):
            client = socket.create_connection(("127.0.0.1", self.port))
            server, _ = self.sock.accept()
            client.close()
            server.close()


def established(values):
    return values.get('tcpstates_transitions_total{family="ipv4",from_state="SYN_SENT",'
                      'to_state="ESTABLISHED"}', 0.0)


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    if not require_root():
        return
    binary = sys.argv[1]
    a, b = Listener(), Listener()
    target = f"127.0.0.1:{free_port()}"
    workdir = tempfile.mkdtemp(prefix="tcpstatesd-reload-")
    config = os.path.join(workdir, "tcpstatesd.yaml")
    log_path = os.path.join(workdir, "daemon.log")

    def write_config(body):
        with open(config, "w") as f:
            f.write(f'web:\n  listen_addresses: ["{target}"]\n{body}')

    def reload_and_wait(expect_success):
        before = scrape(target)["tcpstatesd_config_last_reload_success_timestamp_seconds"]
        daemon.send_signal(signal.SIGHUP)
        gauge = "tcpstatesd_config_last_reload_successful"
        if expect_success:
            wait_for("the reload to succeed", lambda: scrape(target)[
                "tcpstatesd_config_last_reload_success_timestamp_seconds"] > before)
            if scrape(target)[gauge] != 1:
                fail("reload gauge is not 1 after a good reload")
        else:
            wait_for("the reload to be rejected", lambda: scrape(target)[gauge] == 0)

    write_config(f"filters:\n  remote_ports: [{a.port}]\n")
    log = open(log_path, "w")
    daemon = subprocess.Popen([binary, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    ids = set()
    try:
        wait_for("the daemon to be ready", lambda: urllib.request.urlopen(
            f"http://{target}/-/ready", timeout=2).status == 200)
        ids = program_ids_of(daemon.pid)
        if not ids:
            fail("the daemon holds no BPF program")

        base = established(scrape(target))
        a.connect_many(10)
        b.connect_many(7)
        wait_for("10 connections to A counted", lambda: established(scrape(target)) == base + 10)
        time.sleep(0.5)
        if established(scrape(target)) != base + 10:
            fail("connections to the port outside the filter were counted")

        time.sleep(1.1)  # the success timestamp has sub-second resolution; make it move visibly
        write_config(f"filters:\n  remote_ports: [{b.port}]\n")
        reload_and_wait(expect_success=True)
        if program_ids_of(daemon.pid) != ids:
            fail(f"the reload replaced the program: {ids} -> {program_ids_of(daemon.pid)}")
        base = established(scrape(target))
        a.connect_many(5)
        b.connect_many(9)
        wait_for("9 connections to B counted", lambda: established(scrape(target)) == base + 9)
        time.sleep(0.5)
        if established(scrape(target)) != base + 9:
            fail("after the reload, connections to the old port were still counted")

        write_config("filters:\n  remote_ports: [http]\n")
        reload_and_wait(expect_success=False)
        base = established(scrape(target))
        b.connect_many(3)
        a.connect_many(3)
        wait_for("B still counted on the old config",
                 lambda: established(scrape(target)) == base + 3)
        log.flush()
        text = open(log_path).read()
        if not re.search(re.escape(config) + r":\d+:\d+: ", text):
            fail(f"the rejected reload's log does not name file:line:column:\n{text}")

        time.sleep(1.1)
        write_config(f"filters:\n  remote_ports: [{b.port}]\n")
        reload_and_wait(expect_success=True)
        write_config(f"events:\n  socket_table_size: 1024\nfilters:\n  remote_ports: [{b.port}]\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the restart-only change to be refused",
                 lambda: "needs a restart" in open(log_path).read())
        if scrape(target)["tcpstatesd_config_last_reload_successful"] != 0:
            fail("a refused restart-only change left the gauge at 1")
        if daemon.poll() is not None:
            fail("the daemon died during reloads")
    except BaseException:
        if daemon.poll() is None:
            daemon.kill()
        print(open(log_path).read(), file=sys.stderr)
        raise
    stop_daemon(daemon, ids)
    log.close()
    print("PASS")


if __name__ == "__main__":
    main()

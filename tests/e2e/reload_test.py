#!/usr/bin/env python3
"""Reload and signals: the real daemon, reconfigured by SIGHUP while connections run.

Usage: reload_test.py TCPSTATESD_BINARY

1. Started with remote_ports [A]: connections to A are counted, to B are not (a last
   connection to A, counted after B's, shows that B's were not counted).
2. SIGHUP with remote_ports [B]: from then on only B is counted; the reload gauge is 1 and
   its timestamp moves; the program was not re-attached (same BPF program id).
3. SIGHUP with a broken file: the daemon keeps running on the previous configuration
   (still counting B only), the gauge is 0, the log names file:line:column.
4. SIGHUP with a restart-only change (socket table size): refused, gauge 0, message says a
   restart is needed.
5. SIGTERM: exit 0 within a second, no BPF program of ours left.
"""
import re
import signal

from e2e_support import (Daemon, connections, fail, free_port, program_ids_of, sample,
                         scratch_dir, test_arguments, wait_for)


def established(values):
    return sample(values, "tcpstates_transitions_total", family="ipv4", from_state="SYN_SENT",
                  to_state="ESTABLISHED")


def count_only(daemon, base, counted, port, what):
    """After connections of which `counted` pass the filter: one more to `port` (which passes),
    made after them, whose count shows that the daemon has taken in theirs; then the count must
    be exactly base + counted + 1."""
    connections(1, port=port)
    wait_for(f"{counted} + 1 connections counted", lambda: established(daemon.metrics()) >=
             base + counted + 1, seen=lambda: established(daemon.metrics()) - base)
    got = established(daemon.metrics()) - base
    if got != counted + 1:
        fail(f"{what}: {got} connections counted, expected {counted} + 1")


def main():
    [binary] = test_arguments(__doc__, 1)
    a, b = free_port(), free_port()
    workdir = scratch_dir("reload")

    def reload_and_wait(expect_success):
        before = daemon.metrics()["tcpstatesd_config_last_reload_success_timestamp_seconds"]
        daemon.send_signal(signal.SIGHUP)
        gauge = "tcpstatesd_config_last_reload_successful"
        if expect_success:
            wait_for("the reload to succeed", lambda: daemon.metrics()[
                "tcpstatesd_config_last_reload_success_timestamp_seconds"] > before)
            if daemon.metrics()[gauge] != 1:
                fail("reload gauge is not 1 after a good reload")
        else:
            wait_for("the reload to be rejected", lambda: daemon.metrics()[gauge] == 0)

    with Daemon(binary, f"filters:\n  remote_ports: [{a}]\n", workdir) as daemon:
        ids = daemon.program_ids
        base = established(daemon.metrics())
        connections(10, port=a)
        connections(7, port=b)
        count_only(daemon, base, 10, a, "connections to the port outside the filter counted")

        daemon.write_config(f"filters:\n  remote_ports: [{b}]\n")
        reload_and_wait(expect_success=True)
        if program_ids_of(daemon.process.pid) != ids:
            fail(f"the reload replaced the program: {ids} -> {program_ids_of(daemon.process.pid)}")
        base = established(daemon.metrics())
        connections(5, port=a)
        connections(9, port=b)
        count_only(daemon, base, 9, b, "after the reload, connections to the old port counted")

        daemon.write_config("filters:\n  remote_ports: [http]\n")
        reload_and_wait(expect_success=False)
        base = established(daemon.metrics())
        connections(3, port=b)
        connections(3, port=a)
        count_only(daemon, base, 3, b, "after a rejected reload, not on the old configuration")
        if not re.search(re.escape(daemon.config) + r":\d+:\d+: ", daemon.log()):
            fail(f"the rejected reload's log does not name file:line:column:\n{daemon.log()}")

        daemon.write_config(f"filters:\n  remote_ports: [{b}]\n")
        reload_and_wait(expect_success=True)
        daemon.write_config(f"events:\n  socket_table_size: 1024\n"
                            f"filters:\n  remote_ports: [{b}]\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the restart-only change to be refused",
                 lambda: "needs a restart" in daemon.log())
        if daemon.metrics()["tcpstatesd_config_last_reload_successful"] != 0:
            fail("a refused restart-only change left the gauge at 1")
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

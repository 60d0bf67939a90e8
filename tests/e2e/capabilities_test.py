#!/usr/bin/env python3
"""Least privilege once running: the daemon, started as root, holds no capability after start,
and a reload that changes the filters, and scrapes, still work without any.

Usage: capabilities_test.py TCPSTATESD_BINARY

1. Every thread of the running daemon (/proc/PID/task/*/status): CapInh, CapPrm, CapEff,
   CapBnd and CapAmb all 0, NoNewPrivs 1 (docs/operations.md, "Privileges").
2. Filter on port A: 10 connections to A counted exactly (52 transitions).
3. SIGHUP with the filter on port B (map updates on the fds the daemon holds): the reload
   succeeds, the same programs stay, 3 connections to B are counted (17 transitions), A's are
   not; the socket table gauge and the loss counters (bpf_prog_info) still scrape.
"""
import glob
import signal

from e2e_support import (Daemon, connections, fail, free_port, program_ids_of, sample, scratch_dir,
                         test_arguments, wait_for)

EXPECTED = {"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
            "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
            "CapAmb": "0000000000000000", "NoNewPrivs": "1"}


def privileges(status_path):
    fields = {}
    with open(status_path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in EXPECTED:
                fields[key] = value.strip()
    return fields


def transitions(daemon):
    return sample(daemon.metrics(), "tcpstates_transitions_total")


def main():
    [binary] = test_arguments(__doc__, 1)
    workdir = scratch_dir("caps")
    port_a, port_b = free_port(), free_port()
    with Daemon(binary, f"filters:\n  local_ports: [{port_a}]\n", workdir) as daemon:
        pid = daemon.process.pid
        tasks = glob.glob(f"/proc/{pid}/task/*/status")
        for path in tasks:
            if privileges(path) != EXPECTED:
                fail(f"{path}: {privileges(path)}, want {EXPECTED}")
        print(f"{len(tasks)} threads, each: {EXPECTED}")

        connections(10, port=port_a)
        wait_for("52 transitions on port A", lambda: transitions(daemon) == 52)

        before = daemon.metrics()["tcpstatesd_config_last_reload_success_timestamp_seconds"]
        daemon.write_config(f"filters:\n  local_ports: [{port_b}]\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the reload to succeed", lambda: daemon.metrics()[
            "tcpstatesd_config_last_reload_success_timestamp_seconds"] > before)
        if daemon.metrics()["tcpstatesd_config_last_reload_successful"] != 1:
            fail(f"the reload failed without capabilities:\n{daemon.log()}")
        if program_ids_of(pid) != daemon.program_ids:
            fail("the reload replaced the programs")
        connections(3, port=port_a)
        connections(3, port=port_b)
        wait_for("17 more transitions, on port B only", lambda: transitions(daemon) == 52 + 17)
        values = daemon.metrics()
        for name in ("tcpstates_sockets", "tcpstatesd_events_lost_total"):
            if not any(key.startswith(name) for key in values):
                fail(f"no {name} in the scrape")
        if "error" in daemon.log().lower() or "warn" in daemon.log().lower():
            fail(f"the daemon logged a warning or an error:\n{daemon.log()}")
        daemon.stop()
    print("without capabilities: reload to port B applied, 52 + 17 transitions counted, PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Close storm reproducer: does a minimal BPF counter on sock:inet_sock_set_state see every
hit `perf stat` counts on the same tracepoint during the scale test's close storm?

Usage: storm.py COUNTER [--programs first[,second][,raw][,classic]] [--daemon TCPSTATESD [--running]]
                [--runs N]

  COUNTER     the loader of counter.bpf.c (build target storm_counter)
  --programs  counter.bpf.c's programs to attach (README.md says what each is)
  --daemon    also run tcpstatesd as the scale test does (started after the connections are
              open, SIGSTOPped for the storm, SIGCONT after); --running: not stopped
  --runs      storms to make, each in a network namespace of its own (default 1)

The storm is the scale test's churn (tests/e2e/scale_test.py, socket_holder.py), with the
same shape but ports of its own (20000-20874, so that a scale test running at the same time
on this machine is not counted): 25 holders, 3 of them IPv6, 8000 connections each held, then
each closes 4000 of them and opens and closes 800 new ones, all at once. Each client makes
ESTABLISHED -> FIN_WAIT1 -> FIN_WAIT2 -> CLOSE.

Counted, per family, for FIN_WAIT1 -> FIN_WAIT2 and FIN_WAIT2 -> CLOSE of the storm's ports:
what the storm made; perf stat -a on the tracepoint (filtered in the kernel), and how many of
those hits happened while a thread of PID 1 was the current task (perf stat -p 1); each
attached program (with its recursion misses); the daemon's tcpstates_transitions_total
increase.
Counts are read once no socket of the namespace can move any more (no socket in a closing
or opening state), so every difference that remains is a hit not counted.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
from e2e_support import Daemon, fail, scratch_dir, series, wait_for  # noqa: E402
from scale_test import (CLIENT_PORTS, FIRST_LISTENER_PORT, HOLDERS,  # noqa: E402
                        LISTENER_PORTS_PER_HOLDER, Holders, enter_private_network,
                        holder_plans)

# The scale test's storm, on ports 10000 higher.
PORT_OFFSET = 10000
PORTS = (CLIENT_PORTS.start + PORT_OFFSET,
         FIRST_LISTENER_PORT + PORT_OFFSET + LISTENER_PORTS_PER_HOLDER * HOLDERS - 1)
LIFETIME_S = 180
TRANSITIONS = {"4-5": "FIN_WAIT1 -> FIN_WAIT2", "5-7": "FIN_WAIT2 -> CLOSE"}
STATE_NAMES = {"4": "FIN_WAIT1", "5": "FIN_WAIT2", "7": "CLOSE"}
AF = {"ipv4": 2, "ipv6": 10}
MOVING_STATES = ["syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "close-wait", "last-ack",
                 "closing"]


def made(storm_plans):
    """Client closes the storm makes per family (each one FIN_WAIT1->FIN_WAIT2 and
    FIN_WAIT2->CLOSE)."""
    closes = {"ipv4": 0, "ipv6": 0}
    for plan in storm_plans:
        closes[plan["family"]] += len(CLIENT_PORTS) * (len(plan["closed"]["sources"])
                                                       + len(plan["new"]["sources"]))
    return closes


class Perf:
    """perf stat on the tracepoint, one event per (family, transition), filtered in the kernel
    like the counter: system-wide, or (init=True) only the hits that happen while a thread of
    PID 1 is the current task, softirq work done on top of it included."""

    def __init__(self, path, init=False):
        self.path = path
        self.keys = [("all", "all")] + [(family, transition) for family in AF
                                        for transition in TRANSITIONS]
        events = ["-e", "sock:inet_sock_set_state"]  # every hit: the programs' `entered`
        for family, transition in self.keys[1:]:
            old, new = transition.split("-")
            events += ["-e", "sock:inet_sock_set_state", "--filter",
                       f"oldstate=={old} && newstate=={new} && family=={AF[family]} && "
                       f"protocol==6 && sport>={PORTS[0]} && sport<={PORTS[1]}"]
        target = ["-p", "1"] if init else ["-a"]
        self.process = subprocess.Popen(["perf", "stat", *target, "-x", ",", "-o", path, *events])
        expected = len(self.keys) * (len(os.listdir("/proc/1/task")) if init else os.cpu_count())
        wait_for("perf stat to open its events",
                 lambda: self.process.poll() is not None or self.open_events() >= expected)
        if self.process.poll() is not None:
            fail(f"perf stat exited with {self.process.returncode} (tracefs mounted?)")

    def open_events(self):
        fds = f"/proc/{self.process.pid}/fd"
        return sum(1 for fd in os.listdir(fds)
                   if os.readlink(os.path.join(fds, fd)) == "anon_inode:[perf_event]")

    def counts(self):
        """Stops perf: {(family, transition): count}."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        lines = [line for line in open(self.path) if "inet_sock_set_state" in line]
        return {key: int(line.split(",")[0]) for key, line in zip(self.keys, lines)}


class Counter:
    """storm_counter: attached once constructed; counts() reads them."""

    def __init__(self, binary, programs):
        self.process = subprocess.Popen([binary, programs, f"{PORTS[0]}-{PORTS[1]}"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if not self.process.stdout.readline():
            fail(f"storm_counter exited with {self.process.wait()}")

    def counts(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=10)


def moving_sockets():
    """Sockets of this namespace that can still change state."""
    states = [word for state in MOVING_STATES for word in ("state", state)]
    listing = subprocess.run(["ss", "-Htan", *states], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    return len(listing.splitlines())


def daemon_transitions(values):
    """{(family, "OLD-NEW"): count} of the two transitions, from one scrape."""
    numbers = {name: number for number, name in STATE_NAMES.items()}
    counted = series(values, "tcpstates_transitions_total", "family", "from_state", "to_state")
    return {(family, f"{numbers[old]}-{numbers[new]}"): count
            for (family, old, new), count in counted.items()
            if old in numbers and new in numbers}


def one_storm(arguments):
    """One storm in a network namespace of its own (this process is a child): its row."""
    storm_plans = holder_plans(PORT_OFFSET, LIFETIME_S)
    enter_private_network(storm_plans)
    row = {"made": made(storm_plans)}
    with Holders(storm_plans) as holders:
        holders.await_answer("established", 120)
        perf = Perf(os.path.join(scratch_dir("storm"), "perf.csv"))
        perf_init = Perf(os.path.join(scratch_dir("storm"), "perf-init.csv"), init=True)
        counter = Counter(arguments.counter, arguments.programs)
        daemon = None
        if arguments.daemon:
            daemon = Daemon(arguments.daemon,
                            f'filters:\n  local_ports: ["{PORTS[0]}-{PORTS[1]}"]\n'
                            f'metrics:\n  socket_walk_cpu_percent: 50\n',
                            scratch_dir("storm-daemon"))
            before = daemon_transitions(daemon.metrics())
            if not arguments.running:
                daemon.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        holders.tell("churn")
        holders.await_answer("churned", 120)
        row["storm_s"] = round(time.monotonic() - started, 1)
        if daemon and not arguments.running:
            daemon.send_signal(signal.SIGCONT)
        wait_for("no socket of the storm left in a closing state",
                 lambda: moving_sockets() == 0, timeout=60, interval=0.5)
        row["counter"] = counter.counts()
        counter.close()
        row["perf"] = {f"{family} {transition}": n
                       for (family, transition), n in perf.counts().items()}
        row["perf_init"] = {f"{family} {transition}": n
                            for (family, transition), n in perf_init.counts().items()}
        if daemon:
            after = daemon_transitions(daemon.metrics())
            row["daemon"] = {f"{family} {transition}": after.get((family, transition), 0)
                             - before.get((family, transition), 0)
                             for family in AF for transition in TRANSITIONS}
            daemon.stop()
    return row


def print_row(run, row, programs):
    """Per family and transition: made, perf, the hits with PID 1 current, each program's
    count and its difference from what the storm made. Then, per program, the shortfall over
    the storm's four counts beside what accounts for it: the hits with PID 1 current and the
    kernel's recursion misses (which count any socket's hits, so they may exceed)."""
    shortfall = dict.fromkeys(programs, 0)
    for family in AF:
        for transition, name in TRANSITIONS.items():
            key = f"{family} {transition}"
            made_here = row["made"][family]
            cells = [f"run {run}", f"{family:4}", f"{name:22}", f"made {made_here:6}",
                     f"perf {row['perf'][key]:6}", f"PID 1 {row['perf_init'][key]:4}"]
            for program in programs:
                hits = row["counter"]["hits"][program][family].get(transition, 0)
                shortfall[program] += made_here - hits
                cells.append(f"{program} {hits:6} ({hits - made_here:+d})")
            if "daemon" in row:
                counted = row["daemon"][key]
                shortfall["daemon"] = shortfall.get("daemon", 0) + made_here - counted
                cells.append(f"daemon {counted:6.0f} ({counted - made_here:+.0f})")
            print("  ".join(cells), flush=True)
    init_hits = sum(row["perf_init"][f"{family} {transition}"] for family in AF
                    for transition in TRANSITIONS)
    misses = {p: s["recursion_misses"] for p, s in row["counter"]["stats"].items()}
    print(f"run {run}  storm {row['storm_s']} s; short of what the storm made: "
          + ", ".join(f"{p} {n:.0f}" for p, n in shortfall.items())
          + f"; hits with PID 1 current {init_hits}; recursion misses {misses}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counter")
    parser.add_argument("--programs", default="first")
    parser.add_argument("--daemon")
    parser.add_argument("--running", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", help="append each run's row to this file (JSON lines)")
    arguments = parser.parse_args()
    programs = arguments.programs.split(",")
    for run in range(1, arguments.runs + 1):
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(reader)
            row = one_storm(arguments)
            with os.fdopen(writer, "w") as out:
                json.dump(row, out)
            os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as answer:
            text = answer.read()
        _, status = os.waitpid(child, 0)
        if status != 0 or not text:
            fail(f"run {run} failed (status {status})")
        row = json.loads(text)
        print_row(run, row, programs)
        if arguments.json:
            with open(arguments.json, "a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

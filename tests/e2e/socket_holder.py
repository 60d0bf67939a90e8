#!/usr/bin/env python3
"""One holder process of scale_test.py: holds a share of its loopback connections.

Usage: socket_holder.py PLAN_JSON

A process may hold at most 20000 open files here (a hard limit root cannot raise), so the
scale test spreads its connections over several of these. PLAN_JSON names the family, the
client ports and, for each group of connections (`kept`, `closed`, `new`), its server's
listening port and the source addresses its clients bind to: every source address with
every client port, one connection each.

Protocol, one line each way on stdin / stdout:
- prints `established` once the `kept` and `closed` connections are all ESTABLISHED;
- on `churn`: closes the `closed` connections (clients first, then the servers once they
  read the FIN, then their listener), opens the `new` ones and closes them the same way,
  and prints `churned`;
- exits at the end of stdin (the test is done, or died), and in any case after
  `lifetime_s` seconds (SIGALRM). Its sockets go with it.
"""
import json
import signal
import sys

from e2e_support import Connections, connections, fail


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    plan = json.loads(sys.argv[1])
    signal.alarm(plan["lifetime_s"])
    client_ports = range(*plan["client_ports"])

    def sources(group):
        return [(address, port) for address in plan[group]["sources"] for port in client_ports]

    def hold(group):
        group_sources = sources(group)
        return Connections(len(group_sources), plan["family"], plan[group]["port"],
                           group_sources)

    # Both groups stay open until the process exits; the `closed` one is closed on `churn`.
    held = {group: hold(group) for group in ("kept", "closed")}
    print("established", flush=True)
    for command in sys.stdin:
        if command.strip() != "churn":
            fail(f"unknown command {command.strip()!r}")
        held["closed"].close("client")
        new_sources = sources("new")
        connections(len(new_sources), plan["family"], plan["new"]["port"],
                    sources=new_sources)
        print("churned", flush=True)


if __name__ == "__main__":
    main()

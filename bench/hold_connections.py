#!/usr/bin/env python3
"""Holds N loopback TCP connections open (2N sockets, plus one listener) until stdin closes.

Usage: hold_connections.py N

Prints "ready" once every connection is ESTABLISHED on both ends; at the end of stdin closes
the clients first, then each server once it has read the FIN, then the listener (no
simultaneous close: the clients end in TIME_WAIT): e2e_support's Connections. bench/run.py
runs it in a network namespace of its own to measure the kernel memory each tracked socket
costs, the socket gauge test to make sockets of another namespace. N is bounded by the
open-file limit (two descriptors per connection).
"""
import os
import resource
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "e2e"))
from e2e_support import Connections  # noqa: E402


def main():
    count = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if 2 * count + 16 > hard:
        sys.exit(f"{count} connections need {2 * count + 16} descriptors; the limit is {hard}")
    with Connections(count):
        print("ready", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Holds N loopback TCP connections open (2N sockets, plus one listener) until stdin closes.

Usage: hold_connections.py N

Prints "ready" once every connection is ESTABLISHED on both ends. bench/run.py runs it in a
network namespace of its own to measure the kernel memory each tracked socket costs. N is
bounded by the open-file limit (two descriptors per connection).
"""
import resource
import socket
import sys


def main():
    count = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if 2 * count + 16 > hard:
        sys.exit(f"{count} connections need {2 * count + 16} descriptors; the limit is {hard}")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    held = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        held += [client, server]
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()

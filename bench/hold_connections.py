#!/usr/bin/env python3
"""Holds N loopback TCP connections open (2N sockets, plus one listener) until stdin closes.

Usage: hold_connections.py N

Prints "ready" once every connection is ESTABLISHED on both ends; at the end of stdin closes
the clients first, then each server once it has read the FIN, then the listener (no
simultaneous close: the clients end in TIME_WAIT). bench/run.py runs it in a network namespace
of its own to measure the kernel memory each tracked socket costs, the socket gauge test to
make sockets of another namespace. N is bounded by the open-file limit (two descriptors per
connection).
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
        held.append((client, server))
    print("ready", flush=True)
    sys.stdin.read()
    for client, _ in held:
        client.close()
    for _, server in held:
        if server.recv(1) != b"":
            sys.exit("expected EOF on a server socket")
        server.close()
    listener.close()


if __name__ == "__main__":
    main()

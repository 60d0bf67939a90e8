#!/usr/bin/env python3
"""One side of loopback TCP connections, as a process of its own (so that a test can put it in
a cgroup of its own).

    tcp_peer.py serve PORT COUNT      listen on 127.0.0.1:PORT, print "ready", accept COUNT
                                      connections, print "accepted", then wait for each to
                                      end (the client closes first) and close it
    tcp_peer.py connect PORT COUNT    open COUNT connections to 127.0.0.1:PORT, print
                                      "connected", close them all at the end of stdin
"""
import socket
import sys


def serve(port, count):
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(count)
    print("ready", flush=True)
    accepted = [listener.accept()[0] for _ in range(count)]
    print("accepted", flush=True)
    for connection in accepted:
        connection.settimeout(30)
        if connection.recv(1) != b"":
            sys.exit("expected the client to close first")
        connection.close()
    listener.close()


def connect(port, count):
    connections = [socket.create_connection(("127.0.0.1", port), timeout=10)
                   for _ in range(count)]
    print("connected", flush=True)
    sys.stdin.read()
    for connection in connections:
        connection.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("serve", "connect"):
        sys.exit(__doc__)
    {"serve": serve, "connect": connect}[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))

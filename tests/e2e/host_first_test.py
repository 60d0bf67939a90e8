#!/usr/bin/env python3
"""The host first: nothing the daemon attaches may make one of the host's own TCP operations
fail. A listener opened while the daemon runs, then the per-socket option memory of its network
namespace (net.core.optmem_max) lowered to 64 bytes, the budget anything charged to a socket
must fit in: every one of CONNECTIONS connections is accepted, and the daemon still counts each
of them. (The namespace's TcpExtListenDrops is printed, not checked: with this budget it moves by
a few without any daemon, for segments that reach the listener after their child closed.)

(Earlier, per-socket state lived in socket storage copied into each child at its clone
(BPF_F_CLONE), charged to the child's option memory: with this budget the kernel freed the
child and dropped the handshake, 0 of 200 accepted.)

Usage: host_first_test.py TCPSTATESD_BINARY
"""
import socket
import subprocess

from e2e_support import (Daemon, fail, in_own_network_namespace, sample, scratch_dir,
                         test_arguments, wait_for)

CONNECTIONS = 200
OPTMEM_MAX = 64


def listen_drops():
    """TcpExtListenDrops of this network namespace (nstat -a: absolute, not since last)."""
    out = subprocess.run(["nstat", "-az", "TcpExtListenDrops"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "TcpExtListenDrops":
            return int(fields[1])
    fail(f"no TcpExtListenDrops in nstat's output:\n{out}")


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    with Daemon(binary, "", scratch_dir("host-first")) as daemon:
        listener = socket.create_server(("127.0.0.1", 0), backlog=CONNECTIONS)
        port = listener.getsockname()[1]
        with open("/proc/sys/net/core/optmem_max") as f:
            print(f"net.core.optmem_max {f.read().strip()} -> {OPTMEM_MAX} in the test's namespace")
        with open("/proc/sys/net/core/optmem_max", "w") as f:
            f.write(str(OPTMEM_MAX))
        drops_before = listen_drops()
        accepted = 0
        for _ in range(CONNECTIONS):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            listener.settimeout(10)
            try:
                server, _ = listener.accept()
            except TimeoutError:
                client.close()
                continue
            accepted += 1
            client.close()
            server.close()
        listener.close()
        drops = listen_drops() - drops_before
        print(f"{accepted} of {CONNECTIONS} connections accepted, TcpExtListenDrops +{drops}")
        if accepted != CONNECTIONS:
            fail(f"the daemon made the host drop connections: {accepted} of {CONNECTIONS} "
                 f"accepted, TcpExtListenDrops +{drops}")
        # And the daemon lost nothing of its own: every accepted child counted.
        wait_for(f"{CONNECTIONS} children counted", lambda: sample(
            daemon.metrics(), "tcpstates_transitions_total", from_state="LISTEN",
            to_state="SYN_RECV", port=str(port)) == CONNECTIONS)
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

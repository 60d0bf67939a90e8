#!/usr/bin/env python3
"""The host first: nothing the daemon attaches may make one of the host's own TCP operations
fail, and what the daemon itself runs short of it counts by its cause.

1. Socket option memory: a listener opened while the daemon runs, then the per-socket option
   memory of its network namespace (net.core.optmem_max) lowered to 64 bytes, the budget
   anything charged to a socket must fit in: every one of CONNECTIONS connections is accepted,
   and the daemon still counts each of them. (The namespace's TcpExtListenDrops is printed, not
   checked: with this budget it moves by a few without any daemon, for segments that reach the
   listener after their child closed.) Earlier, per-socket state lived in socket storage copied
   into each child at its clone (BPF_F_CLONE), charged to the child's option memory: with this
   budget the kernel freed the child and dropped the handshake, 0 of 200 accepted.
2. The daemon's memory cgroup at its limit (cgroup v1's memory controller): the limit set to
   what the daemon's cgroup uses once it is ready, then HELD connections made and held. Their
   sockets' records (2 * HELD, about 150-200 B each with the table's entry header: 1.5 MB or
   more) need more than the cgroup can still charge without raising its usage (the per-CPU
   charge stocks, 64 pages, 256 KiB, a CPU), so the kernel cannot allocate some of them. Every
   connection is accepted; the records the kernel could not allocate are counted as allocation
   failures and socket state failures; and every child is counted. The cgroup's
   oom_kill_disable makes a fault of the daemon's own at the limit wait until the test lifts
   it, instead of killing it.

Usage: host_first_test.py TCPSTATESD_BINARY
"""
import socket
import subprocess

from e2e_support import (Daemon, MemoryCgroup, fail, free_port, in_own_network_namespace,
                         sample, scratch_dir, test_arguments, wait_for)

CONNECTIONS = 200
OPTMEM_MAX = 64
HELD = 5000  # 2 file descriptors each, within the 20000 a process may open


def listen_drops():
    """TcpExtListenDrops of this network namespace (nstat -a: absolute, not since last)."""
    out = subprocess.run(["nstat", "-az", "TcpExtListenDrops"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "TcpExtListenDrops":
            return int(fields[1])
    fail(f"no TcpExtListenDrops in nstat's output:\n{out}")


def accepted_connections(listener, count, held):
    """`count` connections to `listener`, each accepted within 10 s or given up; appended to
    `held` as (client, server) when given, else closed at once. Returns how many were
    accepted."""
    accepted = 0
    listener.settimeout(10)
    for _ in range(count):
        client = socket.create_connection(listener.getsockname(), timeout=10)
        try:
            server, _ = listener.accept()
        except TimeoutError:
            client.close()
            continue
        accepted += 1
        if held is None:
            client.close()
            server.close()
        else:
            held.append((client, server))
    return accepted


def expect_accepted_and_counted(daemon, port, accepted, count, cause):
    """Fails unless all `count` connections to `port` were accepted (else `cause` made the host
    drop some) and the daemon, which must lose nothing of its own either, counted each child."""
    if accepted != count:
        fail(f"{cause} made the host drop connections: {accepted} of {count} accepted")
    wait_for(f"{count} children counted", lambda: sample(
        daemon.metrics(), "tcpstates_transitions_total", from_state="LISTEN",
        to_state="SYN_RECV", port=str(port)) == count)


def option_memory_part(binary):
    with Daemon(binary, "", scratch_dir("host-first")) as daemon:
        listener = socket.create_server(("127.0.0.1", free_port()), backlog=CONNECTIONS)
        port = listener.getsockname()[1]
        with open("/proc/sys/net/core/optmem_max") as f:
            print(f"net.core.optmem_max {f.read().strip()} -> {OPTMEM_MAX} in the test's namespace")
        with open("/proc/sys/net/core/optmem_max", "w") as f:
            f.write(str(OPTMEM_MAX))
        drops_before = listen_drops()
        accepted = accepted_connections(listener, CONNECTIONS, None)
        listener.close()
        drops = listen_drops() - drops_before
        print(f"{accepted} of {CONNECTIONS} connections accepted, TcpExtListenDrops +{drops}")
        expect_accepted_and_counted(daemon, port, accepted, CONNECTIONS,
                                    f"the daemon (TcpExtListenDrops +{drops})")
        daemon.stop()


def memory_limit_part(binary):
    with MemoryCgroup("host-first", oom_kill_disable=True) as cgroup:
        with Daemon(binary, "", scratch_dir("host-first"), wrapper=cgroup.wrap([])) as daemon:
            listener = socket.create_server(("127.0.0.1", free_port()), backlog=HELD)
            port = listener.getsockname()[1]
            before = daemon.metrics()
            held = []
            try:
                usage = cgroup.limit_to_usage()
                accepted = accepted_connections(listener, HELD, held)
                refused_charges = int(cgroup.read("memory.failcnt"))
            finally:
                cgroup.write("memory.limit_in_bytes", -1)
            print(f"limited to {usage} B: {accepted} of {HELD} connections accepted, "
                  f"{refused_charges} charges refused")
            # Under the listener's port: its tuple was added before the limit.
            expect_accepted_and_counted(daemon, port, accepted, HELD,
                                        "the daemon's memory limit")
            after = daemon.metrics()

            def grown(name):
                return after.get(name, 0) - before.get(name, 0)
            no_memory = grown("tcpstatesd_kernel_allocation_failures_total")
            unrecorded = grown("tcpstatesd_socket_state_failures_total")
            print(f"allocation failures +{no_memory}, socket state failures +{unrecorded}")
            if not (no_memory > 0 and unrecorded > 0):
                fail(f"+{no_memory} allocation failures and +{unrecorded} socket state failures "
                     f"with {refused_charges} charges refused: the records the kernel could not "
                     "allocate must be counted as both")
            for client, server in held:
                client.close()
                server.close()
            listener.close()
            daemon.stop()


def main():
    [binary] = test_arguments(__doc__, 1)
    in_own_network_namespace()
    option_memory_part(binary)
    memory_limit_part(binary)
    print("PASS")


if __name__ == "__main__":
    main()

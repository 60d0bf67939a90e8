#!/usr/bin/env python3
"""Faults: SIGKILL and restart; no BTF; no privileges; a bad configuration at start.

Usage: faults_test.py TCPSTATESD_BINARY

1. SIGKILL: the killed daemon's BPF programs (ids from /proc/PID/fdinfo) are gone within
   5 s; a daemon started again on the same configuration is ready and counts from zero.
2. No BTF: the daemon in a private mount namespace (unshare -m) with an empty tmpfs over
   /sys/kernel/btf exits 1 with one error line that names BTF and what to do; the same
   with an empty file over /sys/kernel/btf/vmlinux (the tracepoint cannot be resolved).
3. No privileges: as nobody without capabilities (setpriv), exit 1 with one error line that
   names CAP_BPF and CAP_PERFMON.
4. A bad configuration at start: exit 1, the message names file:line:column.
5. A memory cgroup limit below what the maps take at start (cgroup v1's memory controller,
   which the maps are charged to): the largest socket table (16777216 records) under a limit
   of MEMORY_LIMIT, which its hash slots alone (16 B each, 256 MiB) fill, while the process
   itself takes far less when it creates them (measured at ready: 2 MiB, 110 MiB under ASan).
   Exit 1 with one error line that names the memory cgroup, the remedy and the key.
"""
import os
import re
import shlex

from e2e_support import (Daemon, MemoryCgroup, connections, expect_one_error, fail,
                         failed_start, free_port, in_private_mounts, loaded_program_ids, sample,
                         scratch_dir, test_arguments, wait_for)

MEMORY_LIMIT = 256 << 20


def transitions(values):
    return sample(values, "tcpstates_transitions_total")


def sigkill_part(binary, workdir):
    # The filter's port is its server's: per call of connections(), 5 transitions of the
    # server's socket per connection and 2 of the listener.
    port = free_port()
    body = f"filters:\n  local_ports: [{port}]\n"
    with Daemon(binary, body, workdir) as first:
        connections(10, port=port)
        wait_for("52 transitions counted", lambda: transitions(first.metrics()) == 52)
        ids = first.program_ids
        first.kill()
    wait_for(f"programs {sorted(ids)} of the killed daemon to be unloaded",
             lambda: not ids & loaded_program_ids(), timeout=5, interval=0.05)

    with Daemon(binary, body, workdir) as second:
        values = second.metrics()
        for name in ("tcpstatesd_socket_state_failures_total", "tcpstatesd_count_table_swaps_total"):
            if values[name] != 0:
                fail(f"restarted daemon starts with {name} = {values[name]}")
        if transitions(values) != 0:
            fail(f"restarted daemon starts with {transitions(values)} transitions")
        connections(3, port=port)
        wait_for("17 transitions counted", lambda: transitions(second.metrics()) == 17)
        if second.program_ids & ids:
            fail("the restarted daemon reuses the killed daemon's programs")
        second.stop()
    print(f"SIGKILL: programs {sorted(ids)} unloaded; restart counts from zero")


def main():
    [binary] = test_arguments(__doc__, 1)
    workdir = scratch_dir("faults")
    sigkill_part(binary, workdir)

    code, lines = failed_start(binary, "", workdir, in_private_mounts(
        "mount -t tmpfs none /sys/kernel/btf"))
    expect_one_error("no BTF", code, lines, [r"BTF", r"/sys/kernel/btf/vmlinux",
                                             r"CONFIG_DEBUG_INFO_BTF"])
    # An empty vmlinux BTF: the attach target cannot be resolved, as on a kernel without
    # the tracepoint.
    empty = os.path.join(workdir, "empty-btf")
    open(empty, "w").close()
    code, lines = failed_start(binary, "", workdir, in_private_mounts(
        f"mount --bind {shlex.quote(empty)} /sys/kernel/btf/vmlinux"))
    expect_one_error("empty BTF", code, lines, [r"inet_sock_set_state", r"BTF",
                                                r"CONFIG_DEBUG_INFO_BTF"])

    os.chmod(workdir, 0o755)  # for nobody to read the configuration
    code, lines = failed_start(binary, "", workdir, [
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all"])
    expect_one_error("no privileges", code, lines, [r"CAP_BPF", r"CAP_PERFMON"])

    code, lines = failed_start(binary, "events:\n  socket_table_size: lots\n", workdir)
    expect_one_error("bad config", code, lines, [
        re.escape(os.path.join(workdir, "tcpstatesd.yaml")) + r":4:22: ", r"socket_table_size"])

    with MemoryCgroup("faults") as cgroup:
        cgroup.write("memory.limit_in_bytes", MEMORY_LIMIT)
        code, lines = failed_start(binary, "events:\n  socket_table_size: 16777216\n", workdir,
                                   cgroup.wrap([]))
    expect_one_error("memory cgroup limit", code, lines, [
        r"Cannot allocate memory", r"memory cgroup", r"MemoryMax=", r"socket_table_size"])
    print("PASS")


if __name__ == "__main__":
    main()

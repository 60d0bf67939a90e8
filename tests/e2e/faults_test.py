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
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

from e2e_support import (Daemon, fail, free_port, loaded_program_ids, require_root, sample,
                         wait_for)


def transitions(values):
    return sample(values, "tcpstates_transitions_total")


def connect_many(listener, count):
    for _ in range(count):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        client.close()
        server.recv(1)
        server.close()


def sigkill_part(binary, workdir):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    body = f"filters:\n  local_ports: [{port}]\n"
    first = Daemon(binary, body, workdir)
    try:
        connect_many(listener, 10)
        wait_for("50 transitions counted", lambda: transitions(first.metrics()) == 50)
    except BaseException:
        first.kill()
        print(first.log(), file=sys.stderr)
        raise
    ids = first.program_ids
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    first.log_file.close()
    wait_for(f"programs {sorted(ids)} of the killed daemon to be unloaded",
             lambda: not ids & loaded_program_ids(), timeout=5, interval=0.05)

    second = Daemon(binary, body, workdir)
    try:
        values = second.metrics()
        for name in ("tcpstatesd_events_received_total", "tcpstatesd_socket_table_evictions_total"):
            if values[name] != 0:
                fail(f"restarted daemon starts with {name} = {values[name]}")
        if transitions(values) != 0:
            fail(f"restarted daemon starts with {transitions(values)} transitions")
        connect_many(listener, 3)
        wait_for("15 transitions counted", lambda: transitions(second.metrics()) == 15)
        if second.program_ids & ids:
            fail("the restarted daemon reuses the killed daemon's programs")
    except BaseException:
        second.kill()
        print(second.log(), file=sys.stderr)
        raise
    second.stop()
    listener.close()
    print(f"SIGKILL: programs {sorted(ids)} unloaded; restart counts from zero")


def run(command, timeout=30):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


def expect_one_error(what, code, lines, patterns):
    errors = [line for line in lines if re.search(r"\berror\b|critical", line, re.I)]
    if code != 1:
        fail(f"{what}: exit code {code}, expected 1; output:\n" + "\n".join(lines))
    if len(errors) != 1:
        fail(f"{what}: expected one error line, got:\n" + "\n".join(lines))
    for pattern in patterns:
        if not re.search(pattern, errors[0]):
            fail(f"{what}: the error line does not match {pattern!r}: {errors[0]}")
    print(f"{what}: {errors[0]}")


def config_file(workdir, body):
    path = os.path.join(workdir, "fault.yaml")
    with open(path, "w") as f:
        f.write(f'web:\n  listen_addresses: ["127.0.0.1:{free_port()}"]\n{body}')
    os.chmod(path, 0o644)
    os.chmod(workdir, 0o755)
    return path


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    if not require_root():
        return
    binary = sys.argv[1]
    workdir = tempfile.mkdtemp(prefix="tcpstatesd-faults-")
    sigkill_part(binary, workdir)

    config = config_file(workdir, "")
    code, lines = run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount -t tmpfs none /sys/kernel/btf && exec "$0" --config "$1"',
                       binary, config])
    expect_one_error("no BTF", code, lines, [r"BTF", r"/sys/kernel/btf/vmlinux",
                                             r"CONFIG_DEBUG_INFO_BTF"])
    # An empty vmlinux BTF: the attach target cannot be resolved, as on a kernel without
    # the tracepoint.
    empty = os.path.join(workdir, "empty-btf")
    open(empty, "w").close()
    code, lines = run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$2" /sys/kernel/btf/vmlinux && exec "$0" --config "$1"',
                       binary, config, empty])
    expect_one_error("empty BTF", code, lines, [r"inet_sock_set_state", r"BTF",
                                                r"CONFIG_DEBUG_INFO_BTF"])

    code, lines = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                       "--inh-caps=-all", "--bounding-set=-all", binary, "--config", config])
    expect_one_error("no privileges", code, lines, [r"CAP_BPF", r"CAP_PERFMON"])

    bad = config_file(workdir, "events:\n  socket_table_size: lots\n")
    code, lines = run([binary, "--config", bad])
    expect_one_error("bad config", code, lines,
                     [re.escape(bad) + r":4:22: ", r"socket_table_size"])
    print("PASS")


if __name__ == "__main__":
    main()

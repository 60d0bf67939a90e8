#!/usr/bin/env python3
"""Kernels without /sys/kernel/btf/vmlinux: --btf.path, for the daemon and for `trace`.

Usage: btf_path_test.py TCPSTATESD_BINARY

Each run is in a private mount namespace with an empty tmpfs over /sys/kernel/btf, as on a
kernel built without CONFIG_DEBUG_INFO_BTF; a copy of the real vmlinux BTF, taken first,
stands for the file BTFHub would provide.

1. No flag: exit 1, one error line naming /sys/kernel/btf/vmlinux and --btf.path.
2. --btf.path COPY: the daemon is ready, its program is the plain raw tracepoint, and it
   counts loopback connections exactly; `tcpstatesd trace --btf.path COPY --transport perfbuf`
   prints them.
3. events.btf_path (the flag's twin) naming a missing file, and a file that is not BTF:
   exit 1, one error line naming the file.
"""
import os
import shutil
import subprocess

from e2e_support import (Daemon, connections, expect_one_error, fail, failed_start, free_port,
                         in_private_mounts, sample, scratch_dir, test_arguments, wait_for)

HIDE_BTF = "mount -t tmpfs none /sys/kernel/btf"


def program_type(program_id):
    out = subprocess.run(["bpftool", "prog", "show", "id", str(program_id)], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1].rstrip(":") if out else ""


def daemon_part(binary, workdir, btf):
    # Per call of connections(): 5 transitions of the server's socket per connection and 2 of
    # the listener, all on the filtered port.
    port = free_port()
    body = f"filters:\n  local_ports: [{port}]\n"
    with Daemon(binary, body, workdir, args=["--btf.path", btf],
                wrapper=in_private_mounts(HIDE_BTF)) as daemon:
        types = {program_type(i) for i in daemon.program_ids}
        if types != {"raw_tracepoint"}:
            fail(f"expected the plain raw tracepoint program, got program types {types}")
        connections(10, port=port)
        wait_for("52 transitions counted",
                 lambda: sample(daemon.metrics(), "tcpstates_transitions_total") == 52)
        daemon.stop()
    print(f"--btf.path {btf}: raw_tracepoint program, 52 transitions of 10 connections counted")


def trace_part(binary, btf):
    port = free_port()
    # The perf buffer here, the ring buffer in the daemon: both raw_tp programs.
    command = in_private_mounts(HIDE_BTF) + [binary, "trace", "--btf.path", btf, "--transport",
                                             "perfbuf", "-L", str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as trace:
        try:
            header = trace.stdout.readline()
            if "OLDSTATE" not in header:
                fail(f"trace printed no header: {header!r} {trace.stderr.read()}")
            connections(1, port=port)
            # The listener's CLOSE->LISTEN comes first.
            line = trace.stdout.readline()
            if "CLOSE" not in line or "LISTEN" not in line:
                fail(f"unexpected first trace line: {line!r}")
        finally:
            trace.kill()
    print(f"trace --btf.path --transport perfbuf: {line.strip()}")


def main():
    [binary] = test_arguments(__doc__, 1)
    workdir = scratch_dir("btf")
    btf = os.path.join(workdir, "vmlinux.btf")
    shutil.copyfile("/sys/kernel/btf/vmlinux", btf)

    code, lines = failed_start(binary, "", workdir, in_private_mounts(HIDE_BTF))
    expect_one_error("no BTF, no flag", code, lines,
                     [r"kernel BTF not readable at /sys/kernel/btf/vmlinux", r"--btf\.path",
                      r"BTFHub"])

    daemon_part(binary, workdir, btf)
    trace_part(binary, btf)

    # These two through the configuration's events.btf_path, the flag's twin.
    missing = os.path.join(workdir, "missing.btf")
    code, lines = failed_start(binary, f'events:\n  btf_path: "{missing}"\n', workdir,
                               in_private_mounts(HIDE_BTF))
    expect_one_error("missing BTF file", code, lines, [f"BTF file {missing}", r"not readable"])
    bogus = os.path.join(workdir, "bogus.btf")
    with open(bogus, "w") as f:
        f.write("this is not BTF\n")
    code, lines = failed_start(binary, f'events:\n  btf_path: "{bogus}"\n', workdir,
                               in_private_mounts(HIDE_BTF))
    expect_one_error("bogus BTF file", code, lines, [f"BTF file {bogus}", r"is not BTF"])
    print("PASS")


if __name__ == "__main__":
    main()

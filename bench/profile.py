#!/usr/bin/env python3
"""Where the programs' time goes: a CPU profile of the daemon's programs under the churn.

Usage: sudo python3 bench/profile.py [--tcpstatesd PATH] [--seconds S] [--top N]

Starts the daemon (default configuration), runs bench's churn in a network namespace of its own,
and samples every CPU with `perf record -e cpu-clock -a -g` meanwhile. Then it sorts the samples
taken inside the tracepoints' dispatch (`bpf_trace_run3`: sock:inet_sock_set_state,
`bpf_trace_run1`: tcp:tcp_destroy_sock) by where they are: a line of the first transition
program's source (its own instructions, or a kernel function it called from that line, found
from the JIT line info: bench/bpf_line_info.cpp), another program, or the dispatch itself. It
prints nanoseconds per transition for each: samples x sampling period / transitions counted
meanwhile (tcpstates_transitions_total, the host's other traffic included).

Without the BPF run-time statistics (their clock reads are not paid here), but a CPU-clock
sample cannot land while interrupts are off: time with interrupts off shows at the instruction
that turns them on again (e.g. a spin unlock). Needs root, perf, bpftool, unshare, ip and the
built tree.
"""
import argparse
import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "default")
# The end-to-end tests' helpers: the daemon on a free port, scrapes, network namespaces.
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from e2e_support import Daemon, in_new_network_namespace, sample, scratch_dir  # noqa: E402

FREQUENCY = 4999
FIRST = "tcpstates_ringbuf"  # the first transition program (ring buffer, tp_btf)


def transitions_total(daemon):
    return sample(daemon.metrics(), "tcpstates_transitions_total")


def first_program_lines(daemon, line_info):
    """The daemon's first transition program's JIT line info: sorted offsets, their lines."""
    programs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], check=True,
                                         capture_output=True, text=True).stdout)
    ids = [p["id"] for p in programs if p["id"] in daemon.program_ids and p.get("name") == FIRST]
    if len(ids) != 1:
        sys.exit(f"expected one program named {FIRST} in the daemon, found {len(ids)}")
    out = subprocess.run([line_info, str(ids[0])], check=True, capture_output=True, text=True)
    lines = []
    for row in out.stdout.splitlines():
        offset, where, source = row.split("\t", 2)
        lines.append((int(offset, 16), f"{where} {source.strip()}"))
    lines.sort()
    return [offset for offset, _ in lines], [where for _, where in lines]


FRAME = re.compile(r"^\s*[0-9a-f]+\s+(\S+?)(?:\+0x([0-9a-f]+))?\s+\(")


def stacks(script):
    """Each sample's frames, leaf first: (symbol, offset or None)."""
    for block in script.split("\n\n"):
        frames = []
        for line in block.splitlines():
            match = FRAME.match(line)
            if match:
                frames.append((match.group(1), int(match.group(2), 16) if match.group(2) else None))
        if frames:
            yield frames


def attribute(script, offsets, where):
    """Samples per place, for samples under the transition and destroy dispatch."""
    places = collections.Counter()
    for frames in stacks(script):
        symbols = [symbol for symbol, _ in frames]
        dispatch = next((i for i, s in enumerate(symbols)
                         if s in ("bpf_trace_run3", "bpf_trace_run1")), None)
        if dispatch is None:
            continue
        inside = frames[:dispatch]
        if not inside:
            places[f"{symbols[dispatch]} (the dispatch itself)"] += 1
            continue
        # The outermost program frame: the first program's lines, or the program's name.
        for depth in range(len(inside) - 1, -1, -1):
            symbol, offset = inside[depth]
            if not symbol.startswith("bpf_prog_"):
                continue
            name = symbol.split("_", 3)[-1]
            if name == FIRST and offset is not None:
                # A return address points past its call.
                at = offset - 1 if depth > 0 else offset
                line = where[max(0, bisect.bisect_right(offsets, at) - 1)]
                callee = inside[depth - 1][0] if depth > 0 else "its own instructions"
                if callee.startswith("bpf_prog_"):
                    callee = "subprogram " + callee.split("_", 3)[-1]
                places[f"{line}  [{callee}]"] += 1
            else:
                places[f"program {name}"] += 1
            break
        else:
            places[f"{symbols[dispatch]} -> {inside[-1][0]}"] += 1
    return places


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcpstatesd", default=os.path.join(BUILD, "tcpstatesd"))
    parser.add_argument("--churn", default=os.path.join(BUILD, "bench", "tcpstatesd_churn"))
    parser.add_argument("--line-info", default=os.path.join(BUILD, "bench",
                                                            "tcpstatesd_bpf_line_info"))
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    workdir = scratch_dir("profile")
    data = os.path.join(workdir, "perf.data")
    daemon = Daemon(args.tcpstatesd, "", workdir, args=["--log.level", "warn"])
    try:
        offsets, where = first_program_lines(daemon, args.line_info)
        churn = subprocess.Popen(in_new_network_namespace(
            [args.churn, "--duration", str(args.seconds + 3)]), stdout=subprocess.DEVNULL)
        time.sleep(1.5)  # past the churn's start
        before = transitions_total(daemon)
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY), "-a",
                        "-g", "-o", data, "--", "sleep", str(args.seconds)], check=True,
                       stderr=subprocess.DEVNULL)
        counted = transitions_total(daemon) - before
        if churn.wait() != 0:
            sys.exit("the churn failed")
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym,symoff,dso"],
                                check=True, capture_output=True, text=True).stdout
        daemon.stop()
    finally:
        daemon.kill()

    # Counted over slightly more than the recording (a scrape each side): a lower bound per
    # transition, by well under 1 % at the churn's rate.
    places = attribute(script, offsets, where)
    ns_per_sample = 1e9 / FREQUENCY
    total = sum(places.values())
    print(f"{counted:.0f} transitions in {args.seconds} s; {total} samples in the programs' "
          f"dispatch: {total * ns_per_sample / counted:.0f} ns per transition")
    for place, samples in places.most_common(args.top):
        print(f"{samples * ns_per_sample / counted:7.1f} ns  {place}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()

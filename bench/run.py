#!/usr/bin/env python3
"""Connection-churn benchmark: no tracer vs libbpf-tools tcpstates vs tcpstatesd.

One command (docs/performance.md) runs interleaved rounds: in each round every configuration
runs the same churn once, in a rotating order, so that the machine's drift (a shared, noisy
2-core box swings 2x within a minute) hits every configuration alike. Results are medians of
per-round figures and of per-round ratios to the no-tracer run of the same round.

Per run of a tracer it records: transitions expected (from the churn's exact count) and seen
(from the tracer's output or /metrics counters), events lost, the tracer's CPU time
(utime+stime from /proc/PID/stat) and its peak RSS (VmHWM). Each round then runs each tracer once
more, with BPF statistics on, for the in-kernel cost of its programs per transition (run_time_ns
/ run_cnt): the statistics slow the programs, so no other run has them. Then, if the daemon is
among the configurations, scrape benchmarks: /metrics latency and size over a kept-alive
connection on a quiet host and while churn runs, with the default configuration and at the
labelled-series cap (every label on every family, many ports connected to first); and for each
daemon configuration the kernel memory per tracked socket (the growth of its BPF maps, as
the kernel accounts them, and of the unreclaimable slab, holding connections with and without
it) and its BPF maps' memory at start.

Needs root (BPF statistics, tracefs for tcpstates, network namespaces). Python 3 standard
library only. It changes nothing on the host that outlives it: BPF statistics are held on by
an fd, tcpstates runs in a mount namespace of its own (tracefs is mounted there when the host
has none mounted), and the churn runs in a network namespace of its own.
"""
import argparse
import collections
import contextlib
import ctypes
import http.client
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The end-to-end tests' helpers: the same scrape, parsing, ports and namespaces as the tests.
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from e2e_support import (bpf_fds, connections_to_new_ports, free_port,  # noqa: E402
                         in_new_network_namespace, program_ids_of, read_text, sample,
                         sample_name_and_labels, scrape, scrape_bytes, scrape_text, status_kib,
                         with_tracefs)

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Both tools report losses on stderr: tcpstates "lost N events on CPU #C",
# tcpstatesd trace "tcpstatesd: N events lost (...)".
LOST_RE = re.compile(rb"lost (\d+) events|(\d+) events lost")


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tracers

class Tracer:
    """A tracer under test: a command line, started before and stopped after each churn.

    kind "lines": one output line per transition (tcpstates, tcpstatesd trace); stdout goes
    to a file on tmpfs and the lines that belong to the churn's ports are counted afterwards.
    kind "metrics": the daemon; transitions seen come from /metrics counters before/after.
    """

    def __init__(self, name, argv, kind, needs_tracefs=False, target=None):
        self.name, self.kind, self.target = name, kind, target
        self.argv = with_tracefs(argv) if needs_tracefs else argv
        self.proc = None

    def start(self, workdir):
        self.out_path = os.path.join(workdir, self.name + ".out")
        self.err_path = os.path.join(workdir, self.name + ".err")
        stdout = open(self.out_path, "wb") if self.kind == "lines" else subprocess.DEVNULL
        with open(self.err_path, "wb") as stderr:
            self.proc = subprocess.Popen(self.argv, stdout=stdout, stderr=stderr,
                                         stdin=subprocess.DEVNULL)
        if stdout is not subprocess.DEVNULL:
            stdout.close()
        self._wait_ready()

    def _wait_ready(self):
        """Ready = a BPF link is held by the process (and /metrics answers, for the daemon)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start: "
                                   + read_text(self.err_path)[-2000:])
            if bpf_fds(self.proc.pid)[1] and (self.kind != "metrics" or self.scrape_ok()):
                time.sleep(0.2)  # let the consumer reach its poll loop
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not attach within 20 s: "
                           + read_text(self.err_path)[-2000:])

    def scrape_ok(self):
        try:
            scrape_text(self.target)
            return True
        except OSError:
            return False

    def prog_ids(self):
        return program_ids_of(self.proc.pid)

    def metrics(self):
        return scrape(self.target)

    def settle(self, expected_min):
        """Waits (bounded) until the daemon has counted at least expected_min transitions
        (a build that counts in user space counts them as it reads its buffer).

        Other traffic (and these very scrapes) keeps the counter moving, so "stopped moving"
        is no signal here; a short grace period after the target covers the reader's lag.
        """
        if self.kind != "metrics":
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sample(self.metrics(), "tcpstates_transitions_total") >= expected_min:
                break
            time.sleep(0.1)
        time.sleep(0.2)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{self.name} ignored SIGINT for 15 s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def lost_from_stderr(self):
        with open(self.err_path, "rb") as f:
            return sum(int(a or b) for a, b in LOST_RE.findall(f.read()))

    def count_lines(self, ports):
        """(lines for the churn's ports, other lines) in the output, without the header."""
        ports = {str(p).encode() for p in ports}
        ours = other = 0
        with open(self.out_path, "rb") as f:
            header = f.readline().split()
            if b"LPORT" not in header or b"RPORT" not in header:
                log(f"warning: {self.name} printed no LPORT/RPORT header: nothing counted")
                return 0, 0
            lport, rport = header.index(b"LPORT"), header.index(b"RPORT")
            for line in f:
                fields = line.split()
                if len(fields) > rport and (fields[lport] in ports or fields[rport] in ports):
                    ours += 1
                else:
                    other += 1
        os.unlink(self.out_path)
        return ours, other


def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads, those ended included), in seconds: in
    clock ticks (10 ms), as much as a whole run of the daemon takes."""
    stat = read_text(f"/proc/{pid}/stat")
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def threads_cpu_ns(pid):
    """{thread id: CPU time in ns} of the process's threads (schedstat's run time: exact)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):
            out[tid] = int(read_text(f"/proc/{pid}/task/{tid}/schedstat").split()[0])
    return out


def cpu_seconds_between(before, after):
    """The process's CPU time between two readings ((threads_cpu_ns, proc_cpu_seconds)): exact
    when the same threads ran throughout, else in clock ticks (an ended thread's time is only
    in those)."""
    (threads0, ticks0), (threads1, ticks1) = before, after
    if threads0.keys() == threads1.keys():
        return sum(threads1[t] - threads0[t] for t in threads1) / 1e9
    return ticks1 - ticks0


def bpf_prog_stats(ids):
    """{id: (name, run_time_ns, run_cnt)} from bpftool."""
    out = {}
    for prog_id in sorted(ids):
        info = json.loads(subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"],
                                         check=True, capture_output=True, text=True).stdout)
        out[prog_id] = (info.get("name", "?"), info.get("run_time_ns", 0), info.get("run_cnt", 0))
    return out


# --------------------------------------------------------------------------- one run

def host_cpu_seconds():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in read_text("/proc/stat").split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def churn_command(args, duration):
    """The churn, in a network namespace of its own.

    Tens of thousands of connections a second leave as many TIME_WAIT entries, and while they
    last, bind() to port 0 fails with EADDRINUSE for every program in the namespace (each
    ephemeral port is taken by some connect()). Its own namespace keeps that away from the
    rest of the host; the tracepoint is global, so the tracers see the traffic all the same.
    """
    return in_new_network_namespace(
        [args.churn, "--" + args.family, "--duration", str(duration),
         "--connections", str(args.max_connections), "--threads", str(args.threads)])


def run_churn(args, duration):
    cmd = churn_command(args, duration)
    busy0, steal0 = host_cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    busy1, steal1 = host_cpu_seconds()
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"churn printed no result (exit {proc.returncode}): {proc.stderr}")
    # How busy the machine was meanwhile: other load is the main source of noise here.
    result["host_busy_seconds"] = busy1 - busy0
    result["host_steal_seconds"] = steal1 - steal0
    if not result["clean"]:
        log(f"warning: churn was not clean: {result['failed']} failed, first error "
            f"{result['first_error']!r}; transitions of failed connections are not counted")
    return result


def run_one(args, tracer, workdir, bpf_time=False):
    """One churn run under one configuration: returns its raw figures. With `bpf_time`, a run
    with BPF statistics on, for the programs' run time (see bpf_statistics())."""
    record = {"config": tracer.name if tracer else "none", "bpf_time": bpf_time}
    duration = args.bpf_time_duration if bpf_time else args.duration
    if tracer is None:
        record["churn"] = run_churn(args, duration)
        return record

    tracer.start(workdir)
    try:
        pid = tracer.proc.pid
        prog_ids = tracer.prog_ids() if bpf_time else []  # only these runs count run time
        stats_before = bpf_prog_stats(prog_ids)
        metrics_before = tracer.metrics() if tracer.kind == "metrics" else None
        cpu_before = (threads_cpu_ns(pid), proc_cpu_seconds(pid))

        with bpf_statistics() if bpf_time else contextlib.nullcontext():
            churn = run_churn(args, duration)
        expected = churn["transitions_expected"]
        tracer.settle(
            sample(metrics_before, "tcpstates_transitions_total") + expected
            if metrics_before else 0)
        if tracer.kind == "lines":
            time.sleep(0.3)  # the reader drains what the kernel already wrote

        cpu_after = (threads_cpu_ns(pid), proc_cpu_seconds(pid))
        stats_after = bpf_prog_stats(prog_ids)
        record["peak_rss_kib"] = status_kib(pid, "VmHWM")
        if tracer.kind == "metrics":
            after = tracer.metrics()

            def delta(name, **labels):
                return int(sample(after, name, **labels) - sample(metrics_before, name, **labels))
            record["seen"] = record["handled"] = delta("tcpstates_transitions_total")
            record["lost"] = delta("tcpstatesd_events_lost_total")
            reasons = [sample_name_and_labels(key)[1].get("reason", "") for key in after
                       if key.startswith("tcpstatesd_events_lost_total{")]
            record["lost_by_reason"] = {reason: delta("tcpstatesd_events_lost_total",
                                                      reason=reason) for reason in reasons}
            record["nested"] = delta("tcpstatesd_nested_transitions_total")
        tracer.stop()
    except BaseException:
        tracer.kill()  # never leave a tracer attached behind a failed run
        raise
    if tracer.kind == "lines":
        record["lost"] = tracer.lost_from_stderr()
        record["seen"], record["other_lines"] = tracer.count_lines(churn["ports"])
        record["handled"] = record["seen"] + record["other_lines"]

    record["churn"] = churn
    record["expected"] = expected
    # The daemon counts every TCP socket on the host: other traffic inflates what it saw and
    # could mask a deficit, so for it `missing` is a lower bound and `lost` is the figure.
    record["missing"] = max(0, expected - record["seen"])
    record["seen_beyond_expected"] = max(0, record["seen"] - expected)
    record["cpu_seconds"] = cpu_seconds_between(cpu_before, cpu_after)
    if bpf_time:
        record["bpf_progs"] = {}
        for prog_id, (name, ns, cnt) in stats_after.items():
            _, ns0, cnt0 = stats_before.get(prog_id, (name, 0, 0))
            # Keyed by id too: the kernel keeps 15 characters of a name, which two programs
            # share (tcpstates_reset_sent_*, tcpstates_reset_received_*).
            record["bpf_progs"][f"{name} #{prog_id}"] = {"run_time_ns": ns - ns0,
                                                        "run_cnt": cnt - cnt0}
    return record


# --------------------------------------------------------------------------- scrape benchmark

# The exposition formats and the Accept header that asks for each (docs/metrics.md,
# "Exposition formats").
FORMATS = {"text": None,
           "OpenMetrics": "application/openmetrics-text; version=1.0.0",
           "protobuf": "application/vnd.google.protobuf; "
                       "proto=io.prometheus.client.MetricFamily; encoding=delimited"}


def format_figures(target, conn, scrapes, interval):
    """Per exposition format: the median latency of `scrapes` gzip scrapes over `conn`, taken
    in turns (text, OpenMetrics, protobuf, text, ...) so that all three see the same host, and
    the last body's size, plain and gzipped."""
    latencies = {name: [] for name in FORMATS}
    sizes = {}
    for _ in range(scrapes):
        for name, accept in FORMATS.items():
            t0 = time.perf_counter()
            body, wire = scrape_bytes(target, "/metrics", gzip_ok=True, connection=conn,
                                      accept=accept)
            latencies[name].append(time.perf_counter() - t0)
            sizes[name] = (len(body), wire)
            time.sleep(interval)
    return {name: {"latency_median_ms": 1e3 * statistics.median(latencies[name]),
                   "body_bytes": sizes[name][0], "gzip_bytes": sizes[name][1]}
            for name in FORMATS}


def scrape_benchmark(args, tracer, workdir, before=None, churn=True, formats=False):
    """/metrics latency and size over one kept-alive connection, as Prometheus scrapes,
    while churn runs in the background (or on a quiet host); `before(tracer)`, if given, runs
    once the daemon is up and returns figures reported with the result. `formats`: then, the
    figures of each exposition format (format_figures), after the churn, if any, has ended."""
    tracer.start(workdir)
    try:
        prepared = before(tracer) if before else {}
        churn = subprocess.Popen(churn_command(args, args.scrape_seconds) if churn else
                                 ["sleep", str(args.scrape_seconds)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # every series the churn produces exists by now
        conn = http.client.HTTPConnection(tracer.target, timeout=10)
        latencies, plain, wire = [], 0, 0
        deadline = time.monotonic() + args.scrape_seconds - 1
        while time.monotonic() < deadline and len(latencies) < args.scrapes:
            t0 = time.perf_counter()
            body, wire = scrape_text(tracer.target, "/metrics", gzip_ok=True, connection=conn)
            latencies.append(time.perf_counter() - t0)
            plain = len(body.encode())
            time.sleep(args.scrape_interval)
        conn.close()
        series = sum(1 for line in body.splitlines() if line and line[0] != "#")
        churn.wait(timeout=args.scrape_seconds + 60)
        if formats:
            conn = http.client.HTTPConnection(tracer.target, timeout=10)
            prepared["formats"] = format_figures(tracer.target, conn, max(args.scrapes // 4, 5),
                                                 args.scrape_interval)
            conn.close()
    finally:
        tracer.stop()
    latencies.sort()
    return {**prepared, "scrapes": len(latencies),
            "latency_median_ms": 1e3 * statistics.median(latencies),
            "latency_p99_ms": 1e3 * latencies[min(len(latencies) - 1,
                                                  int(0.99 * len(latencies)))],
            "latency_max_ms": 1e3 * latencies[-1],
            "body_bytes": plain, "gzip_bytes": wire, "series": series,
            "latencies_ms": [round(1e3 * x, 3) for x in latencies]}


# Labels on every family with room for a value per port: connections to many ports fill
# labels.max_series (its default) before the scrapes.
AT_CAP_CONFIG = """labels:
  port:
    families: [transitions, state_durations, sockets, closes, resets, retransmits, state_oldest]
    max_values: 10000
  cgroup:
    families: [transitions, state_durations, sockets, closes, resets, retransmits]
"""


# The same with native histograms: the protobuf body then carries them beside the classic
# buckets; the text formats stay as they were.
AT_CAP_NATIVE_CONFIG = AT_CAP_CONFIG + "metrics:\n  native_histograms:\n    enabled: true\n"


def scrape_benchmarks(args, tracer, workdir, churn):
    """The scrape benchmark of the default configuration and at the labelled-series cap,
    quiet or under churn; quiet, at the cap with native histograms too."""
    when = "churn" if churn else "quiet"

    def at_cap(name, body):
        config = os.path.join(workdir, f"{name}.yaml")
        with open(config, "w") as f:
            f.write(body)
        return scrape_benchmark(args, daemon_tracer(name, args.tcpstatesd, ["--config", config]),
                                workdir, before=fill_series_cap(args.cap_fill_ports),
                                churn=churn, formats=not churn)
    results = {f"default, {when}": scrape_benchmark(args, tracer, workdir, churn=churn),
               f"at the series cap, {when}": at_cap("at-cap", AT_CAP_CONFIG)}
    if not churn:
        results["at the series cap, native histograms, quiet"] = at_cap("at-cap-native",
                                                                         AT_CAP_NATIVE_CONFIG)
    return results


def fill_series_cap(ports):
    """A `before` for scrape_benchmark: one connection to each of `ports` listeners, then
    waits until the daemon counted a series overflow (the cap reached) and swapped its count
    tables once since (which folds the tuples of the ports no socket uses any more: until
    then each scrape reads all of them, about 5 us each; docs/performance.md, "Scrapes")."""
    def fill(tracer):
        connections_to_new_ports(ports)
        swaps = sample(scrape(tracer.target), "tcpstatesd_count_table_swaps_total")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            values = scrape(tracer.target)
            if (sample(values, "tcpstatesd_series_overflows_total") and
                    sample(values, "tcpstatesd_count_table_swaps_total") > swaps):
                return {"labelled_series": sample(values, "tcpstatesd_labelled_series"),
                        "labelled_series_limit": sample(values,
                                                        "tcpstatesd_labelled_series_limit"),
                        "fill_ports": ports}
            time.sleep(0.2)
        sys.exit(f"{ports} ports did not fill labels.max_series, or no swap followed")
    return fill


# --------------------------------------------------------------------------- kernel memory

HOLDER = os.path.join(REPO, "bench", "hold_connections.py")


def unreclaimable_slab_kib():
    """Where map entries and sockets are allocated; the reclaimable part (dentries, inodes)
    moves with whatever else the host does."""
    return int(re.search(r"^SUnreclaim:\s*(\d+) kB", read_text("/proc/meminfo"), re.M).group(1))


def maps_memlock_kib(pid):
    """Kernel memory of the BPF maps a process holds (fdinfo memlock: since Linux 6.4 what
    each map takes, entries allocated as used included), in KiB."""
    total = 0
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = read_text(f"/proc/{pid}/fdinfo/{name}")
        except OSError:
            continue
        if "map_type:" in text:
            total += int(re.search(r"^memlock:\s*(\d+)", text, re.M).group(1))
    return total / 1024


def slab_growth_holding(args, tracer=None):
    """Unreclaimable slab growth (KiB) while args.memory_connections connections are held, in
    a network namespace of their own; with a daemon running, once it tracks them all, also
    its maps' growth (KiB) and the sockets it tracked."""
    tracked = (lambda: sample(tracer.metrics(), "tcpstates_sockets")) if tracer else None
    tracked_before = tracked() if tracer else 0
    maps_before = maps_memlock_kib(tracer.proc.pid) if tracer else 0
    before = unreclaimable_slab_kib()
    holder = subprocess.Popen(
        in_new_network_namespace([sys.executable, HOLDER, str(args.memory_connections)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("hold_connections.py did not get ready")
        sockets = 2 * args.memory_connections + 1
        deadline = time.monotonic() + 10
        while tracer and tracked() - tracked_before < sockets and time.monotonic() < deadline:
            time.sleep(0.1)
        growth = unreclaimable_slab_kib() - before
        maps_growth = maps_memlock_kib(tracer.proc.pid) - maps_before if tracer else None
        counted = tracked() - tracked_before if tracer else None
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    time.sleep(1)  # sockets are freed after an RCU grace period
    return growth, maps_growth, counted


def memory_benchmark(args, tracer, workdir):
    """Kernel memory per tracked socket: the growth of the daemon's maps (the kernel's own
    account of their entries), and of the unreclaimable slab holding the same connections
    with the daemon running and without, alternately (medians of each, difference per
    socket: a cross-check that includes what the maps' account leaves out, and noise)."""
    with_daemon, without, maps, counted = [], [], [], []
    for _ in range(args.memory_rounds):
        without.append(slab_growth_holding(args)[0])
        tracer.start(workdir)
        try:
            memlock = maps_memlock_kib(tracer.proc.pid)
            growth, maps_growth, tracked = slab_growth_holding(args, tracer)
        finally:
            tracer.stop()
        with_daemon.append(growth)
        maps.append(maps_growth)
        counted.append(tracked)
    sockets = 2 * args.memory_connections + 1
    return {"sockets": sockets, "tracked_min": min(counted),
            "slab_growth_kib_with": with_daemon, "slab_growth_kib_without": without,
            "maps_growth_kib": maps,
            "bytes_per_tracked_socket":
                (median(with_daemon) - median(without)) * 1024 / sockets,
            "map_bytes_per_tracked_socket":
                median(maps) * 1024 / max(min(counted), 1),
            "maps_memlock_kib": memlock}


# --------------------------------------------------------------------------- summary

def bpf_ns_per_transition(record):
    """In-kernel time of all the tracer's tracepoint programs per transition: each transition
    runs every program once (tcpstatesd's first, nested and release ones), so the most-run
    program's count is the transitions'. The daemon's walk (an iterator, run at scrapes) is left
    out."""
    progs = [p for name, p in record["bpf_progs"].items() if "walk" not in name]
    runs = max((p["run_cnt"] for p in progs), default=0)
    return sum(p["run_time_ns"] for p in progs) / runs if runs else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_share(r, seconds):
    """`seconds` of CPU time during a run, as a share of all the machine's CPUs over it."""
    return seconds / (r["churn"]["seconds"] * (os.cpu_count() or 1))


def others_fraction(r):
    """Share of the machine's CPU used by neither the churn nor the tracer during a run."""
    c = r["churn"]
    return cpu_share(r, max(0.0, c["host_busy_seconds"] - c["cpu_seconds"]
                            - r.get("cpu_seconds", 0)))


def steal_fraction(r):
    """Share of the machine's CPU time the hypervisor gave other guests during a run."""
    return cpu_share(r, r["churn"]["host_steal_seconds"])


# A round is steal-free when no run of it lost more than this share of the CPUs to other guests:
# the differences between configurations the ratio is read for are a few percent, and stolen
# time slows whichever run it falls in (up to 86% of a run here). Counted, so that a table
# made mostly of rounds with steal is known for what it is.
STEAL_FREE_FRACTION = 0.05

# The configuration every other tracer is also compared with round by round (the daemon under
# test, `--tcpstatesd`).
PAIRED_BASELINE = "tcpstatesd"


def round_ratio(rnd, name, baseline="none"):
    """A configuration's conn/s in a round over the baseline's run of the same round."""
    return (rnd[name]["churn"]["connections_per_second"]
            / rnd[baseline]["churn"]["connections_per_second"])


def summarize(records, names):
    """The summary of each configuration, and the run's rounds: how many, and which were
    steal-free."""
    by_round = collections.defaultdict(dict)  # the throughput runs
    for r in records:
        r["others_cpu_fraction"] = others_fraction(r)
        r["steal_fraction"] = steal_fraction(r)
        if not r["bpf_time"]:
            by_round[r["round"]][r["config"]] = r
    steal_free = sorted(k for k, rnd in by_round.items()
                        if all(r["steal_fraction"] <= STEAL_FREE_FRACTION for r in rnd.values()))
    summary = {}
    for name in names:
        # The accounting (expected to nested) and the RSS over every run, the BPF time over the
        # runs with statistics, the rest over the runs without.
        every_run = [r for r in records if r["config"] == name]
        runs = [r for r in every_run if not r["bpf_time"]]
        ratios = [round_ratio(rnd, name) for rnd in by_round.values()
                  if name in rnd and "none" in rnd]
        steal_free_ratios = [round_ratio(by_round[k], name) for k in steal_free
                             if name in by_round[k] and "none" in by_round[k]]
        # What the traffic itself paid per transition beyond the no-tracer run of its round:
        # tracepoint dispatch, BPF program, buffer wakeups (see churn.cpp: cpu_seconds).
        extra = [(rnd[name]["churn"]["cpu_us_per_connection"]
                  - rnd["none"]["churn"]["cpu_us_per_connection"])
                 * 1e3 / rnd[name]["churn"]["transitions_per_connection"]
                 for rnd in by_round.values() if name in rnd and "none" in rnd]
        s = {"runs": len(runs),
             "connections_per_second_median": median(
                 [r["churn"]["connections_per_second"] for r in runs]),
             "ratio_to_none_median": median(ratios),
             "ratios": ratios,
             "ratio_to_none_steal_free_median": median(steal_free_ratios),
             "steal_fraction_median": median([r["steal_fraction"] for r in runs]),
             "others_cpu_fraction_median": median([r["others_cpu_fraction"] for r in runs]),
             "churn_cpu_us_per_connection_median": median(
                 [r["churn"]["cpu_us_per_connection"] for r in runs]),
             "traffic_extra_ns_per_transition_median": median(extra) if name != "none" else None,
             "traffic_extra_ns_per_transition": extra}
        if name not in ("none", PAIRED_BASELINE):
            # Against the daemon under test in the same round: what a variant (--daemon) changes,
            # free of the rounds' spread, which a ratio of two medians is not.
            paired = [round_ratio(rnd, name, PAIRED_BASELINE) for rnd in by_round.values()
                      if name in rnd and PAIRED_BASELINE in rnd]
            s.update({"ratio_to_tcpstatesd_median": median(paired),
                      "ratios_to_tcpstatesd": paired})
        if name != "none":
            expected = sum(r["expected"] for r in every_run)
            s.update({
                "transitions_expected": expected,
                "transitions_seen": sum(r["seen"] for r in every_run) if all(
                    "seen" in r for r in every_run) else None,
                "lost": sum(r["lost"] for r in every_run),
                "missing": sum(r["missing"] for r in every_run) if all(
                    "missing" in r for r in every_run) else None,
                "seen_beyond_expected": sum(r["seen_beyond_expected"] for r in every_run),
                # handled by the nested program: lost to the recursion guard without it
                "nested": sum(r.get("nested", 0) for r in every_run) if all(
                    "nested" in r for r in every_run) else None,
                # per million events the tracer handled: its own traffic and everyone else's
                "cpu_s_per_million_median": median(
                    [r["cpu_seconds"] / (r["handled"] / 1e6) if r["handled"] else None
                     for r in runs]),
                "peak_rss_kib_max": max((r["peak_rss_kib"] or 0) for r in every_run),
                "peak_rss_kib_min": min((r["peak_rss_kib"] or 0) for r in every_run),
                "bpf_ns_per_transition_median": median(
                    [bpf_ns_per_transition(r) for r in every_run if r["bpf_time"]]),
            })
        summary[name] = s
    base = "tcpstates"
    for name, s in summary.items():
        if name not in ("none", base) and base in summary:
            ours, theirs = s["ratio_to_none_median"], summary[base]["ratio_to_none_median"]
            if ours is not None and theirs is not None and theirs < 1:
                s["cost_vs_tcpstates"] = (1 - ours) / (1 - theirs)
            cpu_theirs = summary[base].get("cpu_s_per_million_median")
            if cpu_theirs and s["cpu_s_per_million_median"] is not None:
                s["cpu_vs_tcpstates"] = s["cpu_s_per_million_median"] / cpu_theirs
    return summary, {"rounds": len(by_round), "steal_free": steal_free}


def fmt(value, spec):
    width = int(re.match(r"\d*", spec).group() or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def print_table(summary, rounds, scrape_result, memory_result):
    columns = [  # header, width, format, summary key
        ("conn/s", 8, ".0f", "connections_per_second_median"),
        ("ratio", 6, ".3f", "ratio_to_none_median"),
        ("r s-f", 6, ".3f", "ratio_to_none_steal_free_median"),
        ("cost/ts", 7, ".2f", "cost_vs_tcpstates"),
        ("expected", 10, "d", "transitions_expected"),
        ("seen", 10, "d", "transitions_seen"),
        ("missing", 8, "d", "missing"),
        ("lost", 8, "d", "lost"),
        ("nested", 6, "d", "nested"),
        ("cpu s/M", 8, ".3f", "cpu_s_per_million_median"),
        ("rss MiB", 8, ".1f", "peak_rss_mib_max"),
        ("bpf ns", 7, ".0f", "bpf_ns_per_transition_median"),
        ("+ns/tr", 7, ".0f", "traffic_extra_ns_per_transition_median"),
        ("others", 6, ".0%", "others_cpu_fraction_median"),
        ("steal", 6, ".0%", "steal_fraction_median"),
    ]
    head = f"{'config':<16}" + "".join(f" {h:>{w}}" for h, w, _, _ in columns)
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        if s.get("peak_rss_kib_max"):
            s["peak_rss_mib_max"] = s["peak_rss_kib_max"] / 1024
        print(f"{name:<16}" + "".join(f" {fmt(s.get(k), f'{w}{f}')}" for _, w, f, k in columns))
    print(f"steal-free rounds (no run lost over {STEAL_FREE_FRACTION:.0%} of the CPUs to "
          f"other guests): {len(rounds['steal_free'])} of {rounds['rounds']}")
    paired = [f"{name} {s['ratio_to_tcpstatesd_median']:.3f}" for name, s in summary.items()
              if s.get("ratio_to_tcpstatesd_median") is not None]
    if paired:
        print(f"conn/s over {PAIRED_BASELINE}'s in the same round (median): {', '.join(paired)}")
    for name, m in (memory_result or {}).items():
        print(f"kernel memory {name}: maps {m['map_bytes_per_tracked_socket']:.0f} B per tracked "
              f"socket, unreclaimable slab {m['bytes_per_tracked_socket']:.0f} B per socket held "
              f"({m['sockets']} sockets held, {m['tracked_min']:.0f} tracked), BPF maps "
              f"{m['maps_memlock_kib']:.0f} KiB at start")
    for name, r in (scrape_result or {}).items():
        print(f"scrape {name}: {r['scrapes']} scrapes, median {r['latency_median_ms']:.2f} ms, "
              f"p99 {r['latency_p99_ms']:.2f} ms, max {r['latency_max_ms']:.2f} ms, "
              f"body {r['body_bytes']} B ({r['gzip_bytes']} B gzip), {r['series']} samples"
              + (f", labelled {r['labelled_series']:.0f} of {r['labelled_series_limit']:.0f}"
                 if "labelled_series" in r else ""))
        for format_name, f in r.get("formats", {}).items():
            print(f"  {format_name:<12} median {f['latency_median_ms']:.2f} ms, "
                  f"body {f['body_bytes']} B ({f['gzip_bytes']} B gzip)")


# --------------------------------------------------------------------------- environment

@contextlib.contextmanager
def bpf_statistics():
    """BPF run-time statistics on for the block (bpf BPF_ENABLE_STATS, held by an fd).

    Only around the runs that measure the programs' run time: with statistics on, every program
    run reads the clock twice, which cost the traffic about 235 ns a transition when the daemon ran
    three programs per transition (docs/performance.md, "Running the benchmark"), and a deployed
    daemon runs without them. Not through kernel.bpf_stats_enabled: another job on the host
    toggling that sysctl would switch the statistics off in the middle of a run (it happened),
    and a crash would leave it on. The kernel counts the fd as one more user and drops it when
    the process ends.
    """
    numbers = {"x86_64": 321, "aarch64": 280}  # __NR_bpf
    machine = os.uname().machine
    if machine not in numbers:
        sys.exit(f"bench/run.py knows no bpf syscall number for {machine}: add it to numbers")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(16)  # enable_stats.type = BPF_STATS_RUN_TIME (0)
    fd = libc.syscall(numbers[machine], 32, attr, ctypes.sizeof(attr))  # BPF_ENABLE_STATS
    if fd < 0:
        err = ctypes.get_errno()
        sys.exit(f"bpf(BPF_ENABLE_STATS) failed: {os.strerror(err)} (needs Linux >= 5.8, root)")
    try:
        yield
    finally:
        os.close(fd)


def daemon_tracer(name, binary, extra_args):
    target = f"127.0.0.1:{free_port()}"
    return Tracer(name, [binary, "--web.listen-address", target] + extra_args, "metrics",
                  target=target)


def git_revision():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    build = os.path.join(REPO, "build", "default")
    p.add_argument("--quick", action="store_true",
                   help="2 rounds of 3 s, fewer scrapes: about a minute")
    p.add_argument("--rounds", type=int, help="rounds (default 5; quick 2)")
    p.add_argument("--duration", type=float, help="seconds of churn per run (default 8; quick 3)")
    p.add_argument("--bpf-time-duration", type=float,
                   help="seconds of churn per run with BPF statistics on (default: half of "
                        "--duration)")
    p.add_argument("--family", choices=["ipv4", "ipv6"], default="ipv4")
    p.add_argument("--threads", type=int, default=2, help="churn client threads")
    p.add_argument("--max-connections", type=int, default=10_000_000,
                   help="connection cap per run (the time limit normally ends a run first)")
    p.add_argument("--configs", default="none,tcpstates,tcpstatesd",
                   help="comma-separated: none, tcpstates, tcpstatesd (the daemon), "
                        "tcpstatesd-trace (tcpstatesd trace -w to a file)")
    p.add_argument("--churn", default=os.path.join(build, "bench", "tcpstatesd_churn"))
    p.add_argument("--tcpstatesd", default=os.path.join(build, "tcpstatesd"))
    p.add_argument("--tcpstatesd-args", default="",
                   help="extra daemon arguments, e.g. '--config FILE'")
    p.add_argument("--tcpstates", default="tcpstates", help="libbpf-tools tcpstates binary")
    p.add_argument("--tracer", action="append", default=[], metavar="NAME=COMMAND",
                   help="an extra configuration: a command printing one tcpstates-style line "
                        "per transition (with LPORT and RPORT columns) until SIGINT; "
                        "repeatable, e.g. for experiments with program variants")
    p.add_argument("--daemon", action="append", default=[], metavar="NAME=COMMAND",
                   help="an extra daemon configuration: a tcpstatesd command line (binary and "
                        "arguments; --web.listen-address is added), e.g. "
                        "'ring16m=build/default/tcpstatesd --config ring.yaml'; repeatable")
    p.add_argument("--mount-tracefs", action="store_true",
                   help="run the --tracer commands with tracefs, in a mount namespace of "
                        "their own as tcpstates (for variants that attach classic tracepoints)")
    p.add_argument("--scrapes", type=int, help="scrapes in the scrape benchmark (default 200)")
    p.add_argument("--scrape-interval", type=float, default=0.02)
    p.add_argument("--cap-fill-ports", type=int, default=2000,
                   help="ports connected to before the scrapes at the series cap (default 2000)")
    p.add_argument("--memory-connections", type=int, default=9000,
                   help="connections held to measure kernel memory per tracked socket "
                        "(two sockets each; one process: bounded by its open-file limit)")
    p.add_argument("--memory-rounds", type=int, help="rounds of it (default 3; quick 1)")
    p.add_argument("--output", default="bench-results.json", help="raw figures (JSON)")
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.duration = args.duration or (3 if args.quick else 8)
    args.bpf_time_duration = args.bpf_time_duration or args.duration / 2
    args.scrapes = args.scrapes or (50 if args.quick else 200)
    args.memory_rounds = args.memory_rounds or (1 if args.quick else 3)
    args.scrape_seconds = 4 if args.quick else 8
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (BPF programs, sysctl, tracefs)")
    for tool in (args.churn,):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} not found: build first (cmake --build --preset default)")

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    tracers = {"none": None}
    for name in names:
        if name == "tcpstates":
            tracers[name] = Tracer(name, [args.tcpstates, "-w"], "lines", needs_tracefs=True)
        elif name == "tcpstatesd-trace":
            tracers[name] = Tracer(name, [args.tcpstatesd, "trace", "-w"], "lines")
        elif name == "tcpstatesd":
            tracers[name] = daemon_tracer(name, args.tcpstatesd,
                                          shlex.split(args.tcpstatesd_args))
        elif name != "none":
            sys.exit(f"unknown configuration {name!r}")
    for spec in args.tracer:
        name, sep, command = spec.partition("=")
        if not sep or not name or name in tracers:
            sys.exit(f"--tracer wants a new NAME=COMMAND, not {spec!r}")
        tracers[name] = Tracer(name, shlex.split(command), "lines",
                               needs_tracefs=args.mount_tracefs)
        names.append(name)
    for spec in args.daemon:
        name, sep, command = spec.partition("=")
        if not sep or not name or name in tracers or not command.strip():
            sys.exit(f"--daemon wants a new NAME=COMMAND, not {spec!r}")
        binary, *extra = shlex.split(command)
        tracers[name] = daemon_tracer(name, binary, extra)
        names.append(name)
    if "none" not in names:
        names.insert(0, "none")  # ratios need the baseline in every round

    records, scrape_result, memory_result = [], {}, {}
    started = time.time()
    with bpf_statistics():
        pass  # fail now, not after a round, on a kernel without them
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None,
                                        prefix="tcpstatesd-bench-") as workdir:
        # Quiet scrapes first: a churn leaves its TIME_WAIT sockets in the kernel's global
        # hash table for a minute, and every walk passes them (even another namespace's).
        if "tcpstatesd" in names:
            scrape_result.update(scrape_benchmarks(args, tracers["tcpstatesd"], workdir, False))
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            # The throughput runs, then the tracers' runs for their BPF time.
            runs = [(name, False) for name in order] + [(name, True) for name in order
                                                        if tracers[name]]
            for name, bpf_time in runs:
                record = run_one(args, tracers[name], workdir, bpf_time)
                record["round"] = rnd
                records.append(record)
                c = record["churn"]
                log(f"round {rnd + 1}/{args.rounds} {name:<16} "
                    + (f"BPF time {bpf_ns_per_transition(record) or 0:.0f} ns per transition"
                       if bpf_time else f"{c['connections_per_second']:8.0f} conn/s")
                    + (f"  seen {record['seen']}/{record['expected']} lost {record['lost']}"
                       if "seen" in record else ""))
        if "tcpstatesd" in names:
            scrape_result.update(scrape_benchmarks(args, tracers["tcpstatesd"], workdir, True))
        for name in names:
            if tracers[name] and tracers[name].kind == "metrics":
                memory_result[name] = memory_benchmark(args, tracers[name], workdir)

    summary, rounds = summarize(records, names)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "commit": git_revision(), "kernel": os.uname().release,
              "cpus": os.cpu_count(), "wall_seconds": round(time.time() - started, 1),
              "args": {k: v for k, v in vars(args).items()},
              "commands": {n: (t.argv if t else None) for n, t in tracers.items()},
              "summary": summary, "rounds": rounds,
              "scrape": scrape_result, "memory": memory_result,
              "runs": records}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{result['date']} commit {result['commit']} kernel {result['kernel']}, "
          f"{args.rounds} rounds x {len(names)} configs x {args.duration:g} s churn "
          f"({args.family}, {args.threads} client threads), {result['wall_seconds']} s")
    print_table(summary, rounds, scrape_result, memory_result)
    print(f"raw figures: {args.output}")


if __name__ == "__main__":
    main()

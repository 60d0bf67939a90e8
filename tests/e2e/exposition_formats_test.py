#!/usr/bin/env python3
"""End to end: the exposition formats as a real Prometheus negotiates them.

Usage: exposition_formats_test.py TCPSTATESD_BINARY

One daemon, scraped every second by two Prometheus 2.42 servers: one as installed, whose
Accept header prefers OpenMetrics, and one with --enable-feature=native-histograms, whose
Accept header prefers the protobuf format. Checks:

- the daemon's answers: the content type asked for; the OpenMetrics body passes the
  OpenMetrics parser of Debian's python3-prometheus-client, stricter than Prometheus' (it
  checks # EOF, counters' _total, units as suffixes, +Inf buckets, exemplars, which the body
  has once the test's connections were observed; promtool 2.42's check metrics reads only
  the text format 0.0.4); the protobuf body decodes
  with protoc against Debian's metrics.proto, and has the families of the text format;
- which format each server parsed, from what it stored: Prometheus 2.42 writes a protobuf
  bucket's bound as a float (le="1.0"), where it keeps a text format's string (le="1"); and
  only OpenMetrics carries a unit to its metadata API;
- both servers hold exactly the series and values of the daemon's text format for the test's
  own port (nothing but the test's connections moves them), compared once they have stopped
  moving: transitions, closes, the duration histograms' buckets, sums and counts, the gauge;
- native histograms turned on by a reload: the text format unchanged, the protobuf body's
  duration histograms with schema 3 spans holding every observation beside the classic
  buckets.
"""
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request

from e2e_support import (Connections, Daemon, Prometheus, fail, free_port, require_tools,
                         scrape_every_second, scratch_dir, test_arguments, wait_for)

CONNECTIONS = 30
CLIENT_MODEL = "/usr/share/gocode/src/github.com/prometheus/client_model"
# Debian's interpreter, where python3-prometheus-client is installed (the tests' python3 may
# be another).
DEBIAN_PYTHON = "/usr/bin/python3"
OPENMETRICS_CHECK = """
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
samples = [s for f in families for s in f.samples]
print(len(families), len(samples), sum(1 for s in samples if s.exemplar))
"""
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROTOBUF = ("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
            "encoding=delimited")
# Prometheus 2.42's Accept header with native histograms on (as captured from it).
PROTOBUF_ACCEPT = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                   "encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,"
                   "application/openmetrics-text;version=0.0.1;q=0.75,"
                   "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def get(url, accept=None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def api(prometheus, path, **params):
    _, body = get(f"{prometheus.url}/api/v1/{path}?" + urllib.parse.urlencode(params))
    result = json.loads(body)
    if result["status"] != "success":
        fail(f"{path} {params}: {body}")
    return result["data"]


def unescape(value):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def series_key(name, labels, float_le):
    """name and labels as one comparable key; `float_le`: the le bound as a number, the one
    thing the protobuf format (a double on the wire) does not keep as a string."""
    labels = {k: v for k, v in labels.items() if k not in ("job", "instance")}
    if float_le and "le" in labels:
        labels["le"] = float(labels["le"])
    return (name, tuple(sorted(labels.items())))


def text_series(target, port, float_le):
    """The daemon's text-format samples of the test's port: {key: value}."""
    content_type, body = get(f"http://{target}/metrics")
    if not content_type.startswith("text/plain; version=0.0.4"):
        fail(f"the default scrape answered {content_type}")
    found = {}
    for line in body.decode().splitlines():
        match = SAMPLE.match(line)
        if line.startswith("#") or not match:
            continue
        labels = {k: unescape(v) for k, v in LABEL.findall(match.group(2) or "")}
        if labels.get("port") == str(port):
            found[series_key(match.group(1), labels, float_le)] = float(match.group(3))
    return found


def stored_series(prometheus, port, float_le):
    """The latest samples the server stored of the test's port: {key: value}, each value as
    the text format writes it: 16 significant digits (prometheus-cpp), where the protobuf
    format carries the double itself (a duration sum may differ in its 17th digit)."""
    found = {}
    for result in api(prometheus, "query", query=f'{{port="{port}"}}')["result"]:
        labels = dict(result["metric"])
        name = labels.pop("__name__")
        value = float(result["value"][1])
        found[series_key(name, labels, float_le)] = float(f"{value:.16g}")
    return found


def last_scrape(prometheus):
    result = api(prometheus, "query", query="timestamp(up)")["result"]
    return float(result[0]["value"][1]) if result else 0.0


def protobuf_decoded(body, workdir):
    """A delimited body decoded by protoc, as text: the stream becomes a message of repeated
    MetricFamily (field 1) by a tag before each length."""
    wrapper = os.path.join(workdir, "body.proto")
    with open(wrapper, "w") as f:
        f.write('syntax = "proto2";\nimport "io/prometheus/client/metrics.proto";\n'
                "message Body { repeated io.prometheus.client.MetricFamily family = 1; }\n")
    wrapped, at = bytearray(), 0
    while at < len(body):
        length, shift, start = 0, 0, at
        while True:
            byte = body[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        wrapped += b"\x0a" + body[start:at] + body[at:at + length]
        at += length
    if at != len(body):
        fail(f"the protobuf body's last message is cut: {at} of {len(body)} bytes")
    decoded = subprocess.run(["protoc", f"--proto_path={CLIENT_MODEL}",
                              f"--proto_path={workdir}", "--decode=Body", wrapper],
                             input=bytes(wrapped), capture_output=True)
    if decoded.returncode != 0:
        fail(f"protoc --decode: {decoded.stderr.decode()}")
    return decoded.stdout.decode()


def protobuf_family_names(body, workdir):
    """The names of the MetricFamily messages of a delimited body."""
    return set(re.findall(r'^  name: "([^"]*)"$', protobuf_decoded(body, workdir),
                          re.MULTILINE))


def protobuf_histograms(body, workdir, family):
    """The metrics of histogram `family` in a protobuf body: [(labels, histogram)], the
    histogram as {field: [values]} of its numbers, those of sub-messages by their path (e.g.
    "bucket.cumulative_count", "positive_span.length"), exemplars left out."""
    metrics, path, name = [], [], None
    for raw in protobuf_decoded(body, workdir).splitlines():
        depth, line = (len(raw) - len(raw.lstrip())) // 2, raw.strip()
        del path[depth:]
        if line.endswith(" {"):
            path.append(line[:-2])
            if path == ["family", "metric"] and name == family:
                metrics.append(({}, {}))
        elif line != "}" and path == ["family"]:
            if line.startswith("name: "):
                name = json.loads(line[len("name: "):])
        elif line != "}" and name == family and path[:2] == ["family", "metric"]:
            field, value = line.split(": ", 1)
            labels, histogram = metrics[-1]
            if path[2:] == ["label"] and field == "name":
                label = json.loads(value)
            elif path[2:] == ["label"]:
                labels[label] = json.loads(value)
            elif path[2:3] == ["histogram"] and "exemplar" not in path:
                histogram.setdefault(".".join(path[3:] + [field]), []).append(float(value))
    return metrics


def text_family_names(target):
    """The families of a text scrape that have samples (a protobuf family needs one)."""
    _, body = get(f"http://{target}/metrics")
    lines = body.decode().splitlines()
    histograms = {line.split()[2] for line in lines
                  if line.startswith("# TYPE ") and line.endswith(" histogram")}
    names = set()
    for line in lines:
        if line.startswith("#") or not line:
            continue
        name = SAMPLE.match(line).group(1)
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and name[:-len(suffix)] in histograms:
                name = name[:-len(suffix)]
        names.add(name)
    return names


def check_openmetrics(target):
    """The daemon's OpenMetrics body through the parser; the exemplars it holds."""
    content_type, body = get(f"http://{target}/metrics",
                             "application/openmetrics-text;version=1.0.0")
    if content_type != OPENMETRICS:
        fail(f"OpenMetrics asked: {content_type}")
    check = subprocess.run([DEBIAN_PYTHON, "-c", OPENMETRICS_CHECK], input=body,
                           capture_output=True)
    if check.returncode != 0:
        fail(f"the OpenMetrics body does not parse: {check.stderr.decode()[-2000:]}")
    return int(check.stdout.split()[2])


def check_daemon_answers(target, workdir):
    check_openmetrics(target)
    before = text_family_names(target)
    content_type, body = get(f"http://{target}/metrics", PROTOBUF_ACCEPT)
    if content_type != PROTOBUF:
        fail(f"protobuf asked: {content_type}")
    decoded = protobuf_family_names(body, workdir)
    after = text_family_names(target)
    # Families only appear (a first count), so the protobuf scrape's lie between the two.
    if not before <= decoded <= after:
        fail(f"protobuf families differ from the text format's: missing "
             f"{sorted(before - decoded)}, unknown {sorted(decoded - after)}")
    return len(decoded)


DURATIONS = "tcpstates_state_duration_seconds"
NATIVE_ON = "metrics:\n  native_histograms:\n    enabled: true\n"


def reload_timestamp(target):
    _, body = get(f"http://{target}/metrics")
    return float(re.search(r"^tcpstatesd_config_last_reload_success_timestamp_seconds (\S+)$",
                           body.decode(), re.MULTILINE).group(1))


def check_native_histograms(daemon, config, port, first_round, workdir):
    """Native histograms turned on by a reload, the same connections again: the text format's
    duration series are those of the first round, with the same counts (the histograms start
    over at the reload); the protobuf body's carry schema 3 native buckets holding every
    observation, and the classic buckets of the text format."""
    reloaded = reload_timestamp(daemon.target)
    daemon.write_config(config + NATIVE_ON)
    daemon.send_signal(signal.SIGHUP)
    wait_for("the reload that turns native histograms on",
             lambda: reload_timestamp(daemon.target) > reloaded, timeout=10)
    Connections(CONNECTIONS, "ipv4", port=port).close("client")

    def durations(series):
        return {k: v for k, v in series.items() if k[0].startswith(DURATIONS)}

    def counts(series):
        return {k: v for k, v in series.items() if k[0] == DURATIONS + "_count"}
    wait_for("the duration counts of the port to reach the first round's",
             lambda: counts(text_series(daemon.target, port, True)) == counts(first_round),
             timeout=10, seen=lambda: counts(text_series(daemon.target, port, True)))
    text = text_series(daemon.target, port, True)
    if durations(text).keys() != durations(first_round).keys():
        fail(f"native histograms changed the text format's duration series: "
             f"{sorted(durations(text).keys() ^ durations(first_round).keys())[:5]}")
    _, body = get(f"http://{daemon.target}/metrics", PROTOBUF_ACCEPT)
    histograms = [(labels, h) for labels, h in protobuf_histograms(body, workdir, DURATIONS)
                  if labels.get("port") == str(port)]
    if len(histograms) != len(counts(text)):
        fail(f"{len(histograms)} protobuf duration histograms of port {port}, "
             f"{len(counts(text))} in the text format")
    for labels, h in histograms:
        native, running = h.get("zero_count", [0])[0], 0
        for delta in h.get("positive_delta", []):
            running += delta
            native += running
        classic = {series_key(DURATIONS + "_bucket", {**labels, "le": str(bound)}, True): count
                   for bound, count in zip(h["bucket.upper_bound"], h["bucket.cumulative_count"])}
        expected = {k: v for k, v in text.items() if k[0] == DURATIONS + "_bucket" and
                    dict(k[1])["le"] != float("inf") and
                    {n: v for n, v in k[1] if n != "le"} == labels}
        if h.get("schema") != [3] or "positive_span.length" not in h or \
                native != h["sample_count"][0] or classic != expected:
            fail(f"protobuf histogram {labels}: schema {h.get('schema')}, spans "
                 f"{h.get('positive_span.offset')}/{h.get('positive_span.length')}, native "
                 f"buckets hold {native} of {h['sample_count'][0]} observations; classic "
                 f"buckets equal the text format's: {classic == expected}")
    return len(histograms)


def main():
    daemon_binary, = test_arguments(__doc__, 1)
    require_tools("prometheus", "protoc", "bpftool")
    if subprocess.run([DEBIAN_PYTHON, "-c", "import prometheus_client"]).returncode != 0:
        fail("python3-prometheus-client is not installed (.ci/install-deps installs it)")
    if not os.path.exists(os.path.join(CLIENT_MODEL, "io/prometheus/client/metrics.proto")):
        fail("metrics.proto is missing (golang-github-prometheus-client-model-dev)")

    workdir = scratch_dir("e2e-formats")
    port = free_port()
    config = ("labels:\n  port:\n    families: [transitions, state_durations, sockets, closes]\n"
              f"    ports: [{port}]\n")
    with Daemon(daemon_binary, config, workdir) as daemon:
        families = check_daemon_answers(daemon.target, workdir)
        scrape = scrape_every_second(daemon.target)
        servers = {}
        for name, flags in (("openmetrics", ()),
                            ("protobuf", ("--enable-feature=native-histograms",))):
            os.makedirs(os.path.join(workdir, name))
            servers[name] = Prometheus(os.path.join(workdir, name), scrape, flags)
        try:
            for name, server in servers.items():
                wait_for(f"the {name} Prometheus to scrape the daemon",
                         lambda: api(server, "query", query="up")["result"] and
                         api(server, "query", query="up")["result"][0]["value"][1] == "1",
                         timeout=60, seen=lambda: api(server, "targets")["activeTargets"])

            Connections(CONNECTIONS, "ipv4", port=port).close("client")
            # Settled: the text format's samples unchanged from before both servers' latest
            # scrape until after it (the client ends wait in TIME_WAIT for 60 s meanwhile).
            compared = {}

            def settled():
                before = {float_le: text_series(daemon.target, port, float_le)
                          for float_le in (False, True)}
                since = time.time()
                wait_for("both servers to scrape again",
                         lambda: all(last_scrape(s) > since for s in servers.values()))
                stored = {"openmetrics": stored_series(servers["openmetrics"], port, False),
                          "protobuf": stored_series(servers["protobuf"], port, True)}
                if text_series(daemon.target, port, False) != before[False]:
                    return False
                compared.update(text=before, stored=stored)
                return True

            wait_for(f"the series of port {port} to stop moving", settled, timeout=40)
            text = compared["text"]
            # The test's connections were observed: their series carry exemplars, which the
            # parser checks too (syntax, the 128-character limit on their labels).
            if check_openmetrics(daemon.target) == 0:
                fail("no exemplar in the OpenMetrics body after the test's connections")
            if not any(key[0] == "tcpstates_state_duration_seconds_bucket"
                       for key in text[False]):
                fail(f"no duration histogram of port {port} in the text format: {text[False]}")
            for name, float_le in (("openmetrics", False), ("protobuf", True)):
                stored, expected = compared["stored"][name], text[float_le]
                if stored != expected:
                    fail(f"the {name} server stored other series than the text format has: "
                         f"missing {sorted(set(expected) - set(stored))[:5]}, extra "
                         f"{sorted(set(stored) - set(expected))[:5]}, other values "
                         f"{[(k, stored[k], v) for k, v in expected.items() if k in stored and stored[k] != v][:5]}")

            # Which format each parsed: the protobuf bound is a float, the text one a string.
            bucket = 'tcpstates_state_duration_seconds_bucket{{le="{}"}}'
            for name, present, absent in (("openmetrics", "1", "1.0"),
                                          ("protobuf", "1.0", "1")):
                server = servers[name]
                if not api(server, "query", query=bucket.format(present))["result"] or \
                        api(server, "query", query=bucket.format(absent))["result"]:
                    fail(f"the {name} server did not store le=\"{present}\" alone: it did not "
                         f"parse {name}")
            units = {name: api(server, "metadata", metric="tcpstates_state_duration_seconds")
                     for name, server in servers.items()}
            if units["openmetrics"]["tcpstates_state_duration_seconds"][0]["unit"] != "seconds":
                fail(f"no unit from OpenMetrics: {units['openmetrics']}")
            print(f"protobuf families: {families}; series of port {port} identical in the text "
                  f"format and in both servers: {len(text[False])}")
            native = check_native_histograms(daemon, config, port, text[True], workdir)
            print(f"native histograms on: {native} protobuf duration histograms of port "
                  f"{port} with native and classic buckets, the text format unchanged")
        finally:
            for server in servers.values():
                server.stop()
        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Grafana dashboard's PromQL against a real Prometheus scraping a real daemon.

Usage: dashboard_test.py TCPSTATESD_BINARY DASHBOARD_JSON RULES_YML

Extracts every PromQL expression of the dashboard (all panel targets, and the template
variable queries: label_values(EXPR, LABEL) runs EXPR and needs LABEL in its result),
substitutes the Grafana variables with real values and short windows, starts the daemon (its
default configuration, but for labels.max_series: port and cgroup labels on the transitions,
port on the gauges and the queues; native histograms on) and two Prometheus servers that load
the recording rules and scrape it every second, one as most run it and one with native
histograms and exemplar storage (so the duration panels draw from native histograms), makes real
loopback traffic over IPv4 and IPv6 (connections that succeed, connects that are refused,
connections aborted with a reset, sockets held in CLOSE_WAIT for a while and some for the
whole test, and, in a network namespace of the test's own where a firewall rule drops their
SYNs, connects whose SYN is retransmitted until they time out), and asserts that every
expression parses and returns at least one series with a number (not NaN), and that every
rule of the rules file evaluates without error.

Port and Cgroup are substituted as All first (".*", which also matches series without the
label). Then every expression that uses them runs again with the test's own services
selected, as Grafana interpolates a multi-value selection: Port = the two ports the traffic
listens on for the whole test (one per family), which get successful, refused (from the other
family), aborted and timed-out (from the namespace) connects and hold CLOSE_WAIT and
ESTABLISHED sockets; Cgroup = the
cgroup the daemon reports for them. Those must return a number too, only for the selected
values, and the variables' own queries must offer them. Prints expression -> number of
series (and of those with a number).
"""
import collections
import errno
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from e2e_support import (FAMILIES, Background, Connections, Daemon, Prometheus,  # noqa: E402
                         connections, fail, refused_connect, require_root, require_tools,
                         scrape_every_second, scratch_dir, wait_for)

# Grafana's $__rate_interval is at least four scrape intervals; 10 s of 1 s scrapes keeps
# the test short and still gives rate() several samples.
RATE_WINDOW = "10s"
LABEL_VALUES = re.compile(r"^\s*label_values\((.+),\s*(\w+)\s*\)\s*$", re.S)
SERVICE_VARIABLES = ("port", "cgroup")
ALL = {"port": ".*", "cgroup": ".*"}


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def check_structure(dashboard):
    """What an import needs: a prometheus datasource variable every query uses, the
    instance and family variables, unique panel ids, a query in every target."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource" or \
            variables["datasource"].get("query") != "prometheus":
        fail("no datasource variable of type prometheus")
    if "instance" not in variables:
        fail("no instance variable")
    family = variables.get("family", {})
    if not (family.get("multi") and family.get("includeAll")) or \
            sorted(family.get("query", "").split(",")) != ["ipv4", "ipv6"]:
        fail(f"the family variable must be multi-value ipv4,ipv6 with All: {family}")
    for name in SERVICE_VARIABLES:
        # All must be ".*": Grafana's default All, an alternation of the values it listed,
        # would miss series without the label and values admitted since the list was loaded.
        variable = variables.get(name, {})
        query = variable.get("query", {})
        query = query.get("query", "") if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query)
        if not (variable.get("type") == "query" and variable.get("multi") and
                variable.get("includeAll") and variable.get("allValue") == ".*" and match and
                match.group(1).startswith("tcpstates_transitions_total") and
                match.group(2) == name):
            fail(f"the {name} variable must be a multi-value label_values("
                 f"tcpstates_transitions_total..., {name}) with All = .*: {variable}")
    if not any(i.get("pluginId") == "prometheus" for i in dashboard.get("__inputs", [])):
        fail("__inputs has no prometheus datasource")
    ids = [p["id"] for p in walk_panels(dashboard["panels"])]
    if len(ids) != len(set(ids)):
        fail(f"duplicate panel ids: {[i for i, n in collections.Counter(ids).items() if n > 1]}")
    for panel in walk_panels(dashboard["panels"]):
        for t in panel.get("targets", []):
            for where in (panel, t):
                if where.get("datasource", {}).get("uid") != "${datasource}":
                    fail(f"panel {panel['title']!r} does not use the datasource variable")
            if not t.get("expr", "").strip():
                fail(f"panel {panel['title']!r} has a target without an expression")
        if panel["type"] != "row" and not panel.get("description"):
            fail(f"panel {panel['title']!r} has no description")


def expressions(dashboard):
    """(where, expression, label that must be present or None) for every PromQL query."""
    found = []
    for panel in walk_panels(dashboard["panels"]):
        for t in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {t['refId']}", t["expr"], None))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query)
        if match:
            found.append((f"variable {variable['name']}", match.group(1), match.group(2)))
        else:
            found.append((f"variable {variable['name']}", query, None))
    return found


def grafana_regex(values):
    """A multi-value selection as Grafana's Prometheus data source interpolates it: each value
    with its regex metacharacters escaped for a PromQL string, one value as it is, several
    as an alternation."""
    def escape(value):
        value = value.replace("\\", "\\" * 4)  # a backslash (systemd's \x2d) as four
        return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)
    escaped = [escape(value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def uses_services(expression):
    return any(re.search(rf"\${{?{name}\b", expression) for name in SERVICE_VARIABLES)


def substitute(expression, instance, services=ALL):
    # As Grafana interpolates: a single value as it is, the All of family (no custom All
    # value) as a regex alternation, port and cgroup as `services` says.
    values = {"__rate_interval": RATE_WINDOW, "__interval": "2s", "__range": "60s",
              "instance": instance, "family": "(ipv4|ipv6)", **services}
    result = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                    lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expression)
    if "$" in result:
        fail(f"unknown variable left in {result!r}")
    return result


def api(prometheus, path, params=None):
    url = f"{prometheus}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (400, 422):  # a JSON answer with the parse or evaluation error
            return json.loads(error.read())
        raise  # 503 while Prometheus starts: an OSError, which wait_for retries


def connect_to(listener, family):
    """A connection to `listener` (the listening socket of a Connections): (client, server)."""
    client = socket.create_connection((FAMILIES[family][1], listener.getsockname()[1]),
                                      timeout=10)
    server, _ = listener.accept()
    server.settimeout(10)
    return client, server


def abort(client, server):
    """Closes `client` with a reset (SO_LINGER 0): both ends go ESTABLISHED -> CLOSE."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    try:
        if server.recv(1) != b"":
            fail("data after a reset")
    except ConnectionResetError:
        pass
    server.close()


def connect_refused(family, port):
    """Whether a connect to `port` of `family`'s loopback address is refused."""
    with socket.socket(FAMILIES[family][0]) as client:
        client.settimeout(2)
        try:
            client.connect((FAMILIES[family][1], port))
        except ConnectionRefusedError:
            return True
    return False  # something listens there after all: not counted


# Run in a network namespace whose firewall drops the SYNs to PORT: connects to PORT of
# FAMILY's loopback address, one after the other, each with one SYN retransmission
# (TCP_SYNCNT 1) before it times out, about 3 s later. Prints a line per timeout.
SYN_TIMEOUTS = """
import socket, sys
family, host, port, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    with socket.socket(family) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
        client.settimeout(30)  # far above the kernel's 3 s: the kernel gives up, not Python
        try:
            client.connect((host, port))
        except TimeoutError as error:
            print(error.errno, flush=True)  # 110 (ETIMEDOUT) from the kernel, None from Python
            continue
    sys.exit("connected through a firewall that drops every SYN")
"""


def syn_timeouts(family, port, count):
    """A process connecting `count` times to `port` of `family`'s loopback address in a network
    namespace of its own, where a firewall rule drops the SYNs: each connect retransmits its
    SYN (tcpstates_retransmits_total{state="SYN_SENT"}) and times out (tcpstates_closes_total
    {reason="timeout"}). The daemon's tracepoints see every namespace, and `port` is a service
    port's number (a port listened on in any namespace is one), so the series carry it."""
    iptables = {"ipv4": "iptables", "ipv6": "ip6tables"}[family]
    address_family, host = FAMILIES[family]
    return subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c",
         f"ip link set lo up && {iptables} -A INPUT -p tcp --dport {port} -j DROP && "
         'exec "$0" "$@"', sys.executable, "-c", SYN_TIMEOUTS,
         str(int(address_family)), host, str(port), str(count)],
        stdout=subprocess.PIPE, text=True)


class Traffic(Background):
    """Loopback traffic in a thread until stopped, for both families: successful
    connections closed by either side, refused connects, CLOSE_WAIT sockets closed after
    about a second, and HELD_CLOSE_WAIT sockets per family held until the end. The listener
    of the held sockets of each family stays for the whole test: its port is one of
    `service_ports` (the host listens on it, so it is a value of the port label), and gets
    per round a connection closed normally, one aborted with a reset, and a connect from the
    other family, refused (nothing listens on that port in that family: same port value). Per
    family a process in a namespace of its own connects to that port number meanwhile, every
    connect timing out after a SYN retransmission (syn_timeouts)."""
    HELD_CLOSE_WAIT = 3
    MAX_ROUNDS = 3000  # bounded even if the test forgets to stop it
    MAX_SYN_TIMEOUTS = 60  # per family, about 3 s each: longer than the test waits

    def __init__(self):
        super().__init__(None, None)  # run() is its own loop
        self.rounds, self.refused, self.service_refused, self.error = 0, 0, 0, None
        self.service_ports = {}
        self.timeouts = {}  # family -> connects that timed out

    def run(self):
        try:
            self.loop()
        except (OSError, SystemExit) as error:  # SystemExit: a helper's fail(), printed
            self.error = error

    def loop(self):
        held = {family: Connections(self.HELD_CLOSE_WAIT, family)
                for family in ("ipv4", "ipv6")}
        established = []
        for family, connection in held.items():
            connection.close_side("server")
            self.service_ports[family] = connection.port
            established.append(connect_to(connection.listener, family))
        timing_out = {family: syn_timeouts(family, port, self.MAX_SYN_TIMEOUTS)
                      for family, port in self.service_ports.items()}
        try:
            self.rounds_until_stopped(held)
        finally:
            for family, process in timing_out.items():
                process.terminate()
                lines = process.communicate(timeout=10)[0].split()
                # Only the kernel's timeouts (errno 110) count; a child that failed (no
                # iptables, connected after all) is reported with its exit status.
                self.timeouts[family] = lines.count(str(errno.ETIMEDOUT))
                if process.returncode not in (0, -signal.SIGTERM) or \
                        len(lines) != self.timeouts[family]:
                    self.error = self.error or OSError(
                        f"{family} SYN timeouts: exit status {process.returncode}, {lines}")
        for client, server in established:
            client.close()
            server.close()
        for connection in held.values():
            connection.close()

    def rounds_until_stopped(self, held):
        other_family = {"ipv4": "ipv6", "ipv6": "ipv4"}
        waiting = collections.deque()
        while not self.stop_event.is_set() and self.rounds < self.MAX_ROUNDS:
            for family in ("ipv4", "ipv6"):
                connections(1, family, first="client")
                connections(1, family, first="server")
                refused_connect(family)
                self.refused += 1
                client, server = connect_to(held[family].listener, family)
                client.close()
                server.close()
                abort(*connect_to(held[family].listener, family))
                if connect_refused(other_family[family], self.service_ports[family]):
                    self.service_refused += 1
                close_wait = Connections(1, family)
                close_wait.close_side("server")
                waiting.append((time.monotonic(), close_wait))
            while waiting and time.monotonic() - waiting[0][0] > 1.0:
                waiting.popleft()[1].close()
            self.rounds += 1
            self.stop_event.wait(0.1)
        for _, connection in waiting:
            connection.close()


def check_queries(prometheus, queries, target, traffic):
    """Runs every query against `prometheus` (its name, url): each must return a number, first
    with Port and Cgroup as All, then with the traffic's services selected, and every rule must
    evaluate cleanly. Prints what each returned."""
    name, url = prometheus
    deadline = time.monotonic() + 30

    def run(where, expression, label):
        """The series of `expression`, waiting up to the deadline for some."""
        while True:
            answer = api(url, "/api/v1/query", {"query": expression})
            if answer.get("status") != "success":
                fail(f"{name}: {where}: {expression!r} does not run: {answer.get('error')}")
            series = answer["data"]["result"]
            if series or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # a recorded series may need one more evaluation
        if label and series and not all(label in s["metric"] for s in series):
            fail(f"{name}: {where}: label {label!r} missing in {series}")
        return series

    def with_number(series):
        # A native histogram (the heatmap's query in a Prometheus that keeps them) is data too.
        return sum(1 for s in series
                   if "histogram" in s or s["value"][1] not in ("NaN", "+Inf", "-Inf"))

    results = []
    offered = {}  # variable name -> the values its query offers
    for where, raw, label in queries:
        expression = substitute(raw, target)
        series = run(where, expression, label)
        if label:
            offered[where.split()[-1]] = {s["metric"].get(label) for s in series}
        results.append((where, expression, len(series), with_number(series)))

    # The test's own services selected: its two service ports and their cgroups.
    ports = sorted(str(port) for port in traffic.service_ports.values())
    cgroups = sorted({s["metric"].get("cgroup", "") for s in run(
        "the traffic's cgroups", "group by (cgroup) (tcpstates_transitions_total"
        f'{{instance="{target}",port=~"{"|".join(ports)}"}})', "cgroup")})
    for variable, wanted in (("port", ports), ("cgroup", cgroups)):
        if not wanted or not set(wanted) <= offered.get(variable, set()):
            fail(f"{name}: the {variable} variable offers "
                 f"{sorted(offered.get(variable, []))}, not the traffic's {wanted}")
    selection = {"port": grafana_regex(ports), "cgroup": grafana_regex(cgroups)}
    for where, raw, label in queries:
        if not uses_services(raw):
            continue
        expression = substitute(raw, target, selection)
        series = run(where, expression, label)
        for variable, wanted in (("port", ports), ("cgroup", cgroups)):
            other = [s["metric"] for s in series
                     if variable in s["metric"] and s["metric"][variable] not in wanted]
            if other:
                fail(f"{name}: {where}: {expression!r} with {variable} {wanted} selected "
                     f"returns {other}")
        results.append((where, expression, len(series), with_number(series)))

    width = max(len(e) for _, e, _, _ in results)
    print(f"{name}:\n{'expression':<{width}}  series  with a number")
    for where, expression, count, numbers in results:
        print(f"{expression:<{width}}  {count:6}  {numbers:6}")
    # Under this traffic every panel must draw something: a query whose series are all NaN (a
    # quantile or ratio of nothing) would be an empty panel too.
    empty = [f"{where}: {expression}" for where, expression, _, numbers in results
             if numbers == 0]
    if empty:
        fail(f"{name}: expressions returning no data:\n  " + "\n  ".join(empty))

    groups = api(url, "/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    if not rules or broken:
        fail(f"{name}: rules not evaluating cleanly ({len(rules)} loaded): {broken}")
    print(f"{name}: {len(results)} expressions, all returning data; {len(rules)} rules "
          f"healthy; services {ports}, cgroup {cgroups}")


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    daemon_binary, dashboard_path, rules_path = sys.argv[1:]
    dashboard = json.load(open(dashboard_path))
    check_structure(dashboard)
    queries = expressions(dashboard)
    require_root()
    require_tools("prometheus", "bpftool", "unshare", "iptables", "ip6tables")

    workdir = scratch_dir("dashboard")
    config = scrape_every_second
    # The traffic opens new listeners every round, hundreds of port values (past
    # labels.port.max_values they fold into "other"), whose counters' series fill the default
    # labels.max_series within seconds; the gauges take what the counters leave at each
    # scrape, so with the default the selected ports' oldest-socket series would come and go
    # with the round. At its maximum every series has room. Native histograms on, for the
    # Prometheus that asks for them.
    with Daemon(daemon_binary, "labels:\n  max_series: 100000\n"
                "metrics:\n  native_histograms:\n    enabled: true\n", workdir) as daemon:
        target = daemon.target
        rules = [os.path.abspath(rules_path)]
        os.makedirs(os.path.join(workdir, "native"))
        # Two Prometheus servers: one as most run it, the other keeping native histograms
        # (and no _bucket series of them) and exemplars: the panels must draw in both.
        with Prometheus(workdir, config(target, rule_files=rules)) as classic, \
                Prometheus(os.path.join(workdir, "native"), config(target, rule_files=rules),
                           flags=["--enable-feature=native-histograms,exemplar-storage"]
                           ) as native:

            def by_series(prometheus, expression):
                """{labels without __name__, as a sorted tuple: value} of a query."""
                prometheus.check_running()
                result = api(prometheus.url, "/api/v1/query", {"query": expression})
                return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")):
                        float(s["value"][1]) for s in result.get("data", {}).get("result", [])}

            refused = 'tcpstates_transitions_total{from_state="SYN_SENT",to_state="CLOSE"}'
            # Traffic only once Prometheus listens: its connections take ephemeral ports, one
            # of which could be the port picked for Prometheus before it binds it.
            for prometheus in (classic, native):
                wait_for("Prometheus to scrape the daemon",
                         lambda: list(by_series(prometheus, 'up{job="tcpstatesd"}').values())
                         == [1.0], timeout=60)
            before = by_series(classic, refused)

            def window_filled_with_traffic(prometheus):
                """In each family, a refused-connect counter series (they have port and cgroup
                labels: other processes on the host may have theirs) whose every sample in the
                rate window was taken after the traffic began, at least 7 of them (a loaded
                box may skip a scrape or two; rate() needs two)."""
                if traffic.error:  # no use waiting for traffic that stopped
                    fail(f"traffic generator: {traffic.error}")
                oldest = by_series(prometheus, f"min_over_time({refused}[{RATE_WINDOW}])")
                count = by_series(prometheus, f"count_over_time({refused}[{RATE_WINDOW}])")
                return all(any(dict(labels).get("family") == family and
                               value > before.get(labels, -1) and count.get(labels, 0) >= 7
                               for labels, value in oldest.items())
                           for family in ("ipv4", "ipv6"))

            started = time.monotonic()
            with Traffic() as traffic:
                for prometheus in (classic, native):
                    wait_for(f"a {RATE_WINDOW} rate window filled with traffic",
                             lambda: window_filled_with_traffic(prometheus), timeout=60)
                check_queries(("classic", classic.url), queries, target, traffic)
                # The native server's panels drew from native histograms: it has no
                # _bucket series of the durations, and the native ones.
                durations = f'tcpstates_state_duration_seconds{{instance="{target}"}}'
                native_series = api(native.url, "/api/v1/query", {"query": durations})
                classic_buckets = by_series(native, durations.replace("seconds{",
                                                                      "seconds_bucket{"))
                if classic_buckets or not all(
                        "histogram" in s for s in native_series["data"]["result"] or [{}]):
                    fail(f"the native Prometheus should keep the durations as native "
                         f"histograms only: {len(classic_buckets)} _bucket series, "
                         f"{native_series['data']['result'][:1]}")
                check_queries(("native", native.url), queries, target, traffic)
            if traffic.error:
                fail(f"traffic generator: {traffic.error}")
            print(f"{traffic.rounds} traffic rounds, {traffic.refused} refused connects "
                  f"({traffic.service_refused} to the service ports), connects timed out in "
                  f"the namespace {traffic.timeouts}; {time.monotonic() - started:.0f} s of "
                  f"traffic")
        daemon.stop()
    print("PASS")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Why sockets close, the resets and the retransmissions, counted exactly against the real kernel.

The test, the daemon and the traffic run in a network namespace of their own, whose sysctls
and firewall (iptables / ip6tables, nf_tables) are the test's: tcp_syn_retries is 1 (and
tcp_syn_linear_timeouts 0, where the kernel has it), so that a connect() to a port whose SYNs
are dropped times out after one SYN retransmission (~3 s). Each scenario has ports of its own,
one per family, from free_port() (below the ephemeral range, reserved against the other
tests), so that no other job's socket on the machine uses them (the tracepoints see every
namespace); the daemon puts the port label on transitions, closes, resets and retransmits with
exactly these ports. Each scenario runs N
connections per family (IPv4 and IPv6 together), then every count on its ports is compared
with what it did, as before/after deltas:

1. refused: connect() to a port without listener. closes{SYN_SENT,refused} = N, a RST sent
   without socket (state CLOSE) and one received in SYN_SENT per connection.
2. timeout: the SYNs dropped (INPUT). closes{SYN_SENT,timeout} = N, retransmits{SYN_SENT} = N
   (one SYN retransmission each), the namespace's RetransSegs and TCPSynRetrans deltas equal.
3. unreachable: the SYNs answered with ICMP host unreachable (REJECT in OUTPUT), blocking
   connect()s. closes{SYN_SENT,unreachable} = N; retransmits = the SYNs the kernel retransmitted
   and did transmit (RetransSegs - TCPRetransFail: the firewall rejects them on output).
4. reset: established connections aborted by the client (SO_LINGER 0). The client's
   ESTABLISHED -> CLOSE is reason aborted (no error: tcp_disconnect() sends its RST after
   the move), the server's reset (ECONNRESET from the RST): N each;
   resets{sent,ESTABLISHED,tcp_state} = resets{received,ESTABLISHED} = N, and the sent ones
   = the namespace's TcpExtTCPAbortOnData increase (what the kernel counts SO_LINGER 0 in).
8. unread: the client closes with data unread: aborted, its RST's reason tcp_abort_on_close
   (= TcpExtTCPAbortOnClose); the server's close reset.
9. linger2: the client (TCP_LINGER2 -1) shuts down its side, and closes once in FIN_WAIT2:
   FIN_WAIT2 -> CLOSE aborted, its RST's reason tcp_abort_on_linger (= TcpExtTCPAbortOnLinger);
   the server's CLOSE_WAIT -> CLOSE reset.
10. killed: `ss -K` destroys the clients (tcp_abort: ECONNABORTED): aborted, their RSTs'
   reason tcp_state; the server's close reset.
11. unaccepted: the listener closes with N connections never accepted: the kernel aborts
   them (ESTABLISHED -> CLOSE aborted, RST reason tcp_state), the clients' close reset.
Refused's RSTs sent without a socket have reason no_socket. In every scenario, the RSTs sent
on its ports = the namespace's Tcp OutRsts increase (read once its sockets are closed). On a
kernel before 6.10 (no reasons) every sent reset's reason is not_specified.
5. canceled: a non-blocking connect() whose SYN is dropped, closed at once.
   closes{SYN_SENT,canceled} = N.
6. data: established connections whose data to the server is dropped until each client has
   retransmitted at least twice, then delivered. retransmits{ESTABLISHED} = the clients' own
   tcpi_total_retrans (TCP_INFO) per family, and both families together = RetransSegs.
   Every retransmission comparison with the kernel's counters is on the namespace's own
   (/proc/net/snmp, /proc/net/netstat), which count only the test's traffic.
7. synack: the client's final ACK of the handshake dropped at the server until each request
   has retransmitted its SYN-ACK once. retransmits{SYN_RECV} = N, = TCPSynRetrans delta.
Data and synack end with orderly closes: closes{FIN_WAIT2,normal} and {LAST_ACK,normal} = N.
In every scenario each transition on its ports counts exactly, the totals of closes, resets
and retransmits on its ports are exactly the sum of the expected series, no series that no
check expects changes there, and at the end tcpstatesd_events_lost_total is 0. A scenario
whose counts only fell short (nothing counted elsewhere, nothing extra) runs once more on ports
of its own, for the tracepoint hits the build machines' kernel runs no program for (ATTEMPTS).

One line per check (ok: / FAILED:), and on a failed one what changed instead and the
daemon's own counters; exit 1 if any failed.

Usage: close_reasons_test.py BINARY
CLOSE_REASONS_SCENARIOS="timeout data" (say) runs only those scenarios.
"""
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from e2e_support import (FAMILIES, Connections, Daemon, connections, fail, free_port,
                         in_own_network_namespace, sample, sample_name_and_labels, scratch_dir,
                         test_arguments, wait_for)

N = 4
SCENARIOS = ["refused", "timeout", "unreachable", "reset", "canceled", "data", "synack",
             "unread", "linger2", "killed", "unaccepted"]
CONFIG = """labels:
  port:
    families: [transitions, closes, resets, retransmits]
    ports: [{ports}]
  cgroup:
    families: []
"""
CLOSES = "tcpstates_closes_total"
RESETS = "tcpstates_resets_total"
RETRANSMITS = "tcpstates_retransmits_total"
TRANSITIONS = "tcpstates_transitions_total"
# Printed when a check fails: where events may have gone.
SELF_METRICS = ("tcpstatesd_events_", "tcpstatesd_series_overflows_total",
                "tcpstatesd_label_value", "tcpstatesd_nested_transitions_total")
# How long a scenario's counts may take to arrive.
SETTLE_TIMEOUT_S = 5.0
# A port of the test's own, listed among the label's values, for all_counted()'s connections.
marker_port = None

CLIENT_LIFE = {("CLOSE", "SYN_SENT"): 1, ("SYN_SENT", "ESTABLISHED"): 1,
               ("ESTABLISHED", "FIN_WAIT1"): 1, ("FIN_WAIT1", "FIN_WAIT2"): 1,
               ("FIN_WAIT2", "CLOSE"): 1}
SERVER_LIFE = {("LISTEN", "SYN_RECV"): 1, ("SYN_RECV", "ESTABLISHED"): 1,
               ("ESTABLISHED", "CLOSE_WAIT"): 1, ("CLOSE_WAIT", "LAST_ACK"): 1,
               ("LAST_ACK", "CLOSE"): 1}
FAILED_CONNECT = {("CLOSE", "SYN_SENT"): N, ("SYN_SENT", "CLOSE"): N}

# (what, shortfall): a shortfall is a count below the expected one with nothing counted
# elsewhere instead, which a scenario may retry once (see run_scenario).
failures = []


def expect(condition, what, shortfall=False):
    print(f"{'ok' if condition else 'FAILED'}: {what}", flush=True)
    if not condition:
        failures.append((what, shortfall))


def series_key(metric, labels):
    """A sample's key as e2e_support's parsing gives it (prometheus-cpp sorts the labels)."""
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def enter_own_network_namespace():
    """Re-executes the test in a network namespace of its own (in_own_network_namespace), and
    checks that it is no longer in the one it started in: only there may the test change
    sysctls and firewall rules."""
    os.environ.setdefault("CLOSE_REASONS_TEST_STARTED_IN", os.readlink("/proc/self/ns/net"))
    in_own_network_namespace()
    if os.readlink("/proc/self/ns/net") == os.environ["CLOSE_REASONS_TEST_STARTED_IN"]:
        fail("still in the network namespace the test started in: sysctls and firewall "
             "left untouched")


def write_sysctl(name, value):
    with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
        f.write(str(value))


def kernel_counters():
    """This namespace's RetransSegs (Tcp, /proc/net/snmp: every retransmission, SYN and SYN-ACK
    included), TCPSynRetrans (TcpExt, /proc/net/netstat: SYNs and SYN-ACKs) and TCPRetransFail
    (TcpExt). The kernel counts a segment in RetransSegs (and TCPSynRetrans) before it is
    transmitted, and in TCPRetransFail too when the transmission fails (e.g. a packet filter
    drops it on output): `sent`, their difference, is what tcpstates_retransmits_total counts
    (tcp:tcp_retransmit_skb's successful ones). A SYN-ACK is counted only once sent."""
    def table(path, prefix):
        with open(path) as f:
            header, values = [line.split() for line in f if line.startswith(prefix)]
        return dict(zip(header[1:], (int(v) for v in values[1:])))
    tcp, ext = table("/proc/net/snmp", "Tcp:"), table("/proc/net/netstat", "TcpExt:")
    return {"RetransSegs": tcp["RetransSegs"], "TCPSynRetrans": ext["TCPSynRetrans"],
            "TCPRetransFail": ext["TCPRetransFail"], "OutRsts": tcp["OutRsts"],
            **{name: ext[name] for name in ("TCPAbortOnData", "TCPAbortOnClose",
                                            "TCPAbortOnLinger")}}


def counters_delta(before):
    after = kernel_counters()
    delta = {name: after[name] - before[name] for name in before}
    delta["sent"] = delta["RetransSegs"] - delta["TCPRetransFail"]
    return delta


def describe_kernel(kernel):
    return (f"RetransSegs +{kernel['RetransSegs']}, TCPRetransFail +{kernel['TCPRetransFail']}, "
            f"TCPSynRetrans +{kernel['TCPSynRetrans']}")


def firewall(family, action, *rule):
    """iptables (ipv4) or ip6tables (ipv6) `action` (-A, -D) `rule` in this namespace."""
    tool = "iptables" if family == "ipv4" else "ip6tables"
    result = subprocess.run([shutil.which(tool) or f"/usr/sbin/{tool}", action, *rule],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        fail(f"{tool} {action} {' '.join(rule)}: exit {result.returncode}: {result.stderr}")


class Rules:
    """Firewall rules, {family: rule}, in place within a with block (or until remove())."""

    def __init__(self, rules):
        self.rules = rules
        for family, rule in rules.items():
            firewall(family, "-A", *rule)

    def remove(self):
        for family, rule in self.rules.items():
            firewall(family, "-D", *rule)
        self.rules = {}

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.remove()


def tcp_info(sock):
    """(tcpi_unacked, tcpi_total_retrans) of a socket (struct tcp_info, linux/tcp.h)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 24)[0], struct.unpack_from("I", info, 100)[0]


FIN_WAIT2 = 5  # include/net/tcp_states.h


def tcp_state(sock):
    """(tcpi_state,) of a socket (struct tcp_info's first byte)."""
    return (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0],)


def attempt(family, port):
    """One blocking connect(): "connected", or the error's errno name. Blocking, so that it
    returns once the kernel closed the socket (tcp_syn_retries 1 bounds it to ~3 s): a
    non-blocking connect() may report an ICMP error while the socket is still in SYN_SENT, and
    its close() is then the application's (canceled; see scenario_unreachable)."""
    address_family, host = FAMILIES[family]
    with socket.socket(address_family) as s:
        try:
            s.connect((host, port))
            return "connected"
        except OSError as error:
            return errno.errorcode.get(error.errno, f"no errno ({error})")


def attempts(ports, expected_error):
    """N connect()s per family to ports[family], all in parallel; each must fail with
    `expected_error`."""
    jobs = [(family, port) for family, port in ports.items() for _ in range(N)]
    outcomes = [None] * len(jobs)

    def run(i):
        outcomes[i] = attempt(*jobs[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - started
    for family in ports:
        got = [o for (f, _), o in zip(jobs, outcomes) if f == family]
        expect(got == [expected_error] * N,
               f"{family}: {N} connect()s to port {ports[family]} failed with {expected_error} "
               f"(got {got}, {elapsed:.2f} s)")


def expected_counts(family, port, transitions, closes, resets, retransmits):
    """The checks of one family's port: each listed series' delta, and the total of each
    metric on the port equal to the sum of its listed series (nothing else counted there).
    retransmits None: not compared here (the caller compares it otherwise)."""
    checks = []
    for (from_state, to_state), count in transitions.items():
        checks.append((TRANSITIONS, dict(family=family, port=port, from_state=from_state,
                                         to_state=to_state), count))
    for (from_state, reason), count in closes.items():
        checks.append((CLOSES, dict(family=family, port=port, from_state=from_state,
                                    reason=reason), count))
    for (direction, state, *reason), count in resets.items():
        labels = dict(family=family, port=port, direction=direction, state=state)
        if direction == "sent":
            [labels["reason"]] = reason
        checks.append((RESETS, labels, count))
    for state, count in (retransmits or {}).items():
        checks.append((RETRANSMITS, dict(family=family, port=port, state=state), count))
    totals = [(TRANSITIONS, transitions), (CLOSES, closes), (RESETS, resets)]
    if retransmits is not None:
        totals.append((RETRANSMITS, retransmits))
    for metric, table in totals:
        checks.append((metric, dict(port=port), sum(table.values())))
    return checks


def reset_reason(name):
    """The `reason` a sent reset carries: the kernel's (`name`) from Linux 6.10, whose
    tcp:tcp_send_reset passes enum sk_rst_reason; not_specified before."""
    major, minor = (int(n) for n in os.uname().release.split(".")[:2])
    return name if (major, minor) >= (6, 10) else "not_specified"


def sent_resets_on(ports):
    """The (metric, labels) of the resets sent on `ports`."""
    return [(RESETS, dict(port=port, direction="sent")) for port in ports]


def resets_equal(ports, kernel, counter):
    """settle_and_check's sum: the resets sent on the scenario's `ports` equal the increase of
    the namespace's `counter` (kernel: a counters_delta)."""
    return (f"resets sent on its ports = the namespace's {counter}",
            sent_resets_on(ports.values()), kernel[counter])


def describe(metric, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def changed(before, after, metric):
    """The series of `metric` that changed, on any port: {labels: delta}."""
    deltas = {}
    for key, value in after.items():
        name, labels = sample_name_and_labels(key)
        if name == metric and value != before.get(key, 0):
            deltas[key[len(name):]] = value - before.get(key, 0)
    return deltas


def all_counted(daemon):
    """Returns once the daemon has counted a connection to marker_port made now, after
    everything the scenario did: the daemon takes events in the order they happened (and a count
    kept in the kernel is made at the transition itself), so by then an extra event of the
    scenario, one that arrived late, would show as well."""
    def listeners_closed():
        return sample(daemon.metrics(), TRANSITIONS, port=marker_port, from_state="LISTEN",
                      to_state="CLOSE")
    before = listeners_closed()
    connections(1, port=marker_port)  # its listener closes last
    wait_for(f"the marker connection's listener on port {marker_port} to be counted closed",
             lambda: listeners_closed() > before, timeout=SETTLE_TIMEOUT_S, interval=0.02,
             seen=lambda: f"{listeners_closed() - before:g} closed since")


def settle_and_check(daemon, name, before, checks, sums=()):
    """Waits (bounded) until every check holds, then until all_counted(), and reports each on
    the last scrape. checks: (metric, labels, expected delta); sums: (what, [(metric, labels)],
    expected) for a delta summed over several series."""
    def got(after, metric, labels):
        return sample(after, metric, **labels) - sample(before, metric, **labels)

    def failed(after):
        return ([(metric, labels) for metric, labels, want in checks
                 if got(after, metric, labels) != want] +
                [what for what, parts, want in sums
                 if sum(got(after, metric, labels) for metric, labels in parts) != want])
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while failed(daemon.metrics()) and time.monotonic() < deadline:
        time.sleep(0.05)
    all_counted(daemon)
    after = daemon.metrics()
    # Anything counted on the scenario's ports in a series no check expects (an event counted
    # in the wrong state, say) is a failure of its own, which no retry may hide.
    ports = {labels["port"] for _, labels, _ in checks if "port" in labels}
    expected_series = {series_key(metric, labels) for metric, labels, _ in checks}
    for metric in (TRANSITIONS, CLOSES, RESETS, RETRANSMITS):
        for labels, delta in changed(before, after, metric).items():
            key = metric + labels
            if key not in expected_series and any(f'port="{p}"' in labels for p in ports):
                expect(False, f"{name}: {key} +{delta:g}, which no check expects")
    for metric, labels, want in checks:
        value = got(after, metric, labels)
        expect(value == want, f"{name}: {describe(metric, labels)} +{value:g}"
               + ("" if value == want else f", expected +{want}; what changed: "
                  + str(changed(before, after, metric))), shortfall=value < want)
    for what, parts, want in sums:
        value = sum(got(after, metric, labels) for metric, labels in parts)
        expect(value == want, f"{name}: {what}: +{value:g}"
               + ("" if value == want else f", expected +{want}"), shortfall=value < want)
    if failed(after):
        print(f"{name}: the daemon's own counters meanwhile: " + str({
            key: value - before.get(key, 0) for key, value in after.items()
            if key.startswith(SELF_METRICS) and value != before.get(key, 0)}))
    return after


def retransmits_on(ports, state=None):
    """The (metric, labels) of the retransmissions on `ports` (every state, or `state`)."""
    extra = {} if state is None else {"state": state}
    return [(RETRANSMITS, dict(port=port, **extra)) for port in ports]


def retransmits_equal(ports, kernel, counter="sent"):
    """settle_and_check's sum: the retransmissions on the scenario's `ports` equal the
    increase of the namespace's `counter`, by default RetransSegs - TCPRetransFail."""
    what = "RetransSegs - TCPRetransFail" if counter == "sent" else f"{counter} delta"
    return (f"retransmits on its ports = the namespace's {what}",
            retransmits_on(ports.values()), kernel[counter])


def scenario_refused(daemon, ports):
    before, kernel = daemon.metrics(), kernel_counters()
    attempts(ports, "ECONNREFUSED")
    kernel = counters_delta(kernel)
    checks = []
    for family, port in ports.items():
        checks += expected_counts(family, port, FAILED_CONNECT, {("SYN_SENT", "refused"): N},
                                  {("sent", "CLOSE", reset_reason("no_socket")): N,
                                   ("received", "SYN_SENT"): N}, {})
    settle_and_check(daemon, "refused", before, checks, [
        resets_equal(ports, kernel, "OutRsts")])


def scenario_timeout(daemon, ports):
    rules = {f: ["INPUT", "-p", "tcp", "--dport", str(p), "--syn", "-j", "DROP"]
             for f, p in ports.items()}
    before, kernel = daemon.metrics(), kernel_counters()
    with Rules(rules):
        attempts(ports, "ETIMEDOUT")
    kernel = counters_delta(kernel)
    expect(kernel["TCPSynRetrans"] == len(ports) * N == kernel["sent"] == kernel["RetransSegs"],
           f"timeout: the kernel retransmitted one SYN per connection: {describe_kernel(kernel)}")
    checks = []
    for family, port in ports.items():
        checks += expected_counts(family, port, FAILED_CONNECT, {("SYN_SENT", "timeout"): N},
                                  {}, {"SYN_SENT": N})
    settle_and_check(daemon, "timeout", before, checks, [
        retransmits_equal(ports, kernel)])


def scenario_unreachable(daemon, ports):
    reject = {"ipv4": "icmp-host-unreachable", "ipv6": "icmp6-addr-unreachable"}
    rules = {f: ["OUTPUT", "-p", "tcp", "--dport", str(p), "-j", "REJECT", "--reject-with",
                 reject[f]] for f, p in ports.items()}
    before, kernel = daemon.metrics(), kernel_counters()
    with Rules(rules):
        attempts(ports, "EHOSTUNREACH")
    kernel = counters_delta(kernel)
    checks = []
    for family, port in ports.items():
        checks += expected_counts(family, port, FAILED_CONNECT,
                                  {("SYN_SENT", "unreachable"): N}, {}, None)
    # An ICMP error that arrives while connect() holds the socket is a soft error: the socket
    # stays in SYN_SENT and retransmits its SYN 1 s later, which the firewall rejects on
    # output (RetransSegs and TCPRetransFail count it, tcp_retransmit_skb reports a failure);
    # the ICMP error for that one closes the socket. None is sent.
    print(f"unreachable: kernel: {describe_kernel(kernel)}")
    settle_and_check(daemon, "unreachable", before, checks, [
        retransmits_equal(ports, kernel)])


def close_clients(ports, prepare, how, server_reads="ECONNRESET"):
    """N established connections per family whose clients close after `prepare(conns)` (which
    returns what it saw, for the message); each server end's one read must give
    `server_reads` (read_outcome)."""
    for family, port in ports.items():
        conns = Connections(N, family, port)
        seen = prepare(conns)
        conns.close_side("client")
        outcomes = read_resets(conns)
        expect(outcomes == [server_reads] * N,
               f"{family}: {N} clients {how}{seen}, each server end read {server_reads} (got "
               f"{outcomes})")


def clients_abort(daemon, name, ports, prepare, how, reason, counter=None):
    """close_clients() where `prepare` makes the close an abort: each server end reads
    ECONNRESET, the counts are aborted_established()'s with the reset's `reason`, and the
    resets sent equal the OutRsts increase and the namespace's `counter`'s, when given."""
    before, kernel = daemon.metrics(), kernel_counters()
    close_clients(ports, prepare, how)
    kernel = counters_delta(kernel)
    settle_and_check(daemon, name, before, aborted_established(ports, reason), [
        resets_equal(ports, kernel, c) for c in ([counter] if counter else []) + ["OutRsts"]])


def scenario_reset(daemon, ports):
    def linger_zero(conns):
        for client in conns.ends["client"]:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return ""
    # SO_LINGER 0 aborts through tcp_disconnect(): its reset's reason is tcp_state, and the
    # kernel counts it in TCPAbortOnData.
    clients_abort(daemon, "reset", ports, linger_zero, "aborted (SO_LINGER 0)", "tcp_state",
                  "TCPAbortOnData")


def aborted_established(ports, reason):
    """The checks of N established connections per family aborted by the client with a RST
    of `reason`, which the server received, and their listener closed."""
    checks = []
    for family, port in ports.items():
        transitions = {("CLOSE", "LISTEN"): 1, ("CLOSE", "SYN_SENT"): N,
                       ("SYN_SENT", "ESTABLISHED"): N, ("LISTEN", "SYN_RECV"): N,
                       ("SYN_RECV", "ESTABLISHED"): N, ("ESTABLISHED", "CLOSE"): 2 * N,
                       ("LISTEN", "CLOSE"): 1}
        checks += expected_counts(family, port, transitions,
                                  {("ESTABLISHED", "aborted"): N, ("ESTABLISHED", "reset"): N,
                                   ("LISTEN", "normal"): 1},
                                  {("sent", "ESTABLISHED", reset_reason(reason)): N,
                                   ("received", "ESTABLISHED"): N}, {})
    return checks


def read_outcome(end):
    """What one recv(1) on `end` gives: "read b'...'", or the error's errno name."""
    try:
        return f"read {end.recv(1)!r}"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error))


def read_resets(conns):
    """Each server end's read once its client aborted: ECONNRESET expected."""
    outcomes = []
    for server in conns.ends["server"]:
        outcomes.append(read_outcome(server))
        server.close()
    conns.ends["server"] = []
    conns.listener.close()
    return outcomes


def scenario_unread(daemon, ports):
    def unread_byte(conns):
        for server in conns.ends["server"]:
            server.sendall(b"u")
        # Peeked, the byte is there and still unread.
        peeked = [client.recv(1, socket.MSG_PEEK) for client in conns.ends["client"]]
        expect(peeked == [b"u"] * N, f"each client has the byte to leave unread (peeked {peeked})")
        return f" (peeked {peeked})"
    clients_abort(daemon, "unread", ports, unread_byte, "closed with a byte unread",
                  "tcp_abort_on_close", "TCPAbortOnClose")


def scenario_killed(daemon, ports):
    def destroy_clients(conns):
        # The clients' ends only: their remote port is the listener's.
        result = subprocess.run(["ss", "-K", "-t", "dport", "=", f":{conns.port}"],
                                capture_output=True, text=True, timeout=30)
        errors = [read_outcome(client) for client in conns.ends["client"]]
        expect(result.returncode == 0 and errors == ["ECONNABORTED"] * N,
               f"ss -K destroyed {N} clients (exit {result.returncode} "
               f"{result.stderr.strip()}; they read {errors})")
        return f" (they read {errors})"
    clients_abort(daemon, "killed", ports, destroy_clients, "destroyed by ss -K", "tcp_state")


def scenario_unaccepted(daemon, ports):
    before, kernel = daemon.metrics(), kernel_counters()
    for family, port in ports.items():
        address_family, host = FAMILIES[family]
        listener = socket.socket(address_family)
        listener.bind((host, port))
        listener.listen(N)
        clients = [socket.create_connection((host, port), timeout=10) for _ in range(N)]
        # The handshakes are complete at the server once the accept queue holds them all.
        wait_for(f"{N} connections in the accept queue", lambda: listen_queue(family, port) == N,
                 timeout=5, interval=0.02, seen=lambda: f"{listen_queue(family, port)} queued")
        listener.close()
        outcomes = [read_outcome(client) for client in clients]
        for client in clients:
            client.close()
        expect(outcomes == ["ECONNRESET"] * N,
               f"{family}: a listener closed with {N} connections not accepted, each client read "
               f"ECONNRESET (got {outcomes})")
    kernel = counters_delta(kernel)
    # The server's ends abort here, the clients are reset: the same counts as a client's abort.
    settle_and_check(daemon, "unaccepted", before, aborted_established(ports, "tcp_state"), [
        resets_equal(ports, kernel, "OutRsts")])


def listen_queue(family, port):
    """The connections waiting in the accept queue of the listener on `port` (ss's Recv-Q)."""
    result = subprocess.run(["ss", "-Hltn", "-4" if family == "ipv4" else "-6",
                             "sport", "=", f":{port}"], capture_output=True, text=True, timeout=30)
    fields = result.stdout.split()
    return int(fields[1]) if len(fields) > 1 else -1


def scenario_linger2(daemon, ports):
    def in_fin_wait2(conns):
        for client in conns.ends["client"]:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, -1)
            client.shutdown(socket.SHUT_WR)
        wait_for_sockets("every client in FIN_WAIT2", conns.ends["client"],
                         lambda state, *_: state == FIN_WAIT2, timeout=5, info=tcp_state)
        return ""
    before, kernel = daemon.metrics(), kernel_counters()
    # The server reads the client's FIN first (EOF), then the RST.
    close_clients(ports, in_fin_wait2, "closed in FIN_WAIT2 with TCP_LINGER2 -1",
                  server_reads="read b''")
    kernel = counters_delta(kernel)
    checks = []
    for family, port in ports.items():
        transitions = {("CLOSE", "LISTEN"): 1, ("CLOSE", "SYN_SENT"): N,
                       ("SYN_SENT", "ESTABLISHED"): N, ("LISTEN", "SYN_RECV"): N,
                       ("SYN_RECV", "ESTABLISHED"): N, ("ESTABLISHED", "FIN_WAIT1"): N,
                       ("FIN_WAIT1", "FIN_WAIT2"): N, ("FIN_WAIT2", "CLOSE"): N,
                       # close() in FIN_WAIT2 sets the state it is in (tcp_close_state()).
                       ("FIN_WAIT2", "FIN_WAIT2"): N,
                       ("ESTABLISHED", "CLOSE_WAIT"): N, ("CLOSE_WAIT", "CLOSE"): N,
                       ("LISTEN", "CLOSE"): 1}
        checks += expected_counts(family, port, transitions,
                                  {("FIN_WAIT2", "aborted"): N, ("CLOSE_WAIT", "reset"): N,
                                   ("LISTEN", "normal"): 1},
                                  {("sent", "FIN_WAIT2", reset_reason("tcp_abort_on_linger")): N,
                                   ("received", "CLOSE_WAIT"): N}, {})
    settle_and_check(daemon, "linger2", before, checks, [
        resets_equal(ports, kernel, "TCPAbortOnLinger"),
        resets_equal(ports, kernel, "OutRsts")])


def scenario_canceled(daemon, ports):
    rules = {f: ["INPUT", "-p", "tcp", "--dport", str(p), "--syn", "-j", "DROP"]
             for f, p in ports.items()}
    before = daemon.metrics()
    with Rules(rules):
        for family, port in ports.items():
            address_family, host = FAMILIES[family]
            codes = []
            for _ in range(N):
                with socket.socket(address_family) as s:
                    s.setblocking(False)
                    codes.append(errno.errorcode.get(s.connect_ex((host, port)), "0"))
            expect(codes == ["EINPROGRESS"] * N,
                   f"{family}: {N} non-blocking connect()s to port {port} in progress, "
                   f"closed at once (got {codes})")
    checks = []
    for family, port in ports.items():
        checks += expected_counts(family, port, FAILED_CONNECT, {("SYN_SENT", "canceled"): N},
                                  {}, {})
    settle_and_check(daemon, "canceled", before, checks)


def orderly_life(family, port, retransmits):
    """The checks of N connections and their listener closed in order, client first."""
    transitions = {key: N * count for key, count in {**CLIENT_LIFE, **SERVER_LIFE}.items()}
    transitions.update({("CLOSE", "LISTEN"): 1, ("LISTEN", "CLOSE"): 1})
    closes = {("FIN_WAIT2", "normal"): N, ("LAST_ACK", "normal"): N, ("LISTEN", "normal"): 1}
    return expected_counts(family, port, transitions, closes, {}, retransmits)


def wait_for_sockets(what, sockets, predicate, timeout, info=None):
    info = info or tcp_info
    wait_for(what, lambda: all(predicate(*info(s)) for s in sockets), timeout=timeout,
             interval=0.02, seen=lambda: str([info(s) for s in sockets]))


def scenario_data(daemon, ports):
    rules = {f: ["INPUT", "-p", "tcp", "--dport", str(p), "!", "--syn", "-j", "DROP"]
             for f, p in ports.items()}
    before, kernel = daemon.metrics(), kernel_counters()
    conns = {family: Connections(N, family, port) for family, port in ports.items()}
    clients = [c for family in ports for c in conns[family].ends["client"]]
    payload = b"d" * 100
    started = time.monotonic()
    with Rules(rules):
        for client in clients:
            client.sendall(payload)
        wait_for_sockets("every client to retransmit twice", clients,
                         lambda unacked, retrans: retrans >= 2, timeout=5)
    dropped = time.monotonic() - started
    for family in ports:
        for server in conns[family].ends["server"]:
            received = b""
            while len(received) < len(payload):
                chunk = server.recv(len(payload) - len(received))
                if not chunk:
                    fail("EOF before the data")
                received += chunk
    # Once everything is acknowledged, nothing more is retransmitted.
    wait_for_sockets("every client's data to be acknowledged", clients,
                     lambda unacked, retrans: unacked == 0, timeout=5)
    retransmitted = {family: sum(tcp_info(c)[1] for c in conns[family].ends["client"])
                     for family in ports}
    for family in ports:
        conns[family].close(first="client")
    kernel = counters_delta(kernel)
    # tcpi_total_retrans, like RetransSegs, counts failed transmissions too: none here.
    expect(all(retransmitted[f] >= 2 * N for f in ports) and kernel["TCPRetransFail"] == 0,
           f"data: dropped for {dropped:.2f} s, then delivered; the clients' tcpi_total_retrans: "
           f"{retransmitted}; kernel: {describe_kernel(kernel)}")
    checks = []
    for family, port in ports.items():
        checks += orderly_life(family, port, {"ESTABLISHED": retransmitted[family]})
    settle_and_check(daemon, "data", before, checks, [
        retransmits_equal(ports, kernel)])


def scenario_synack(daemon, ports):
    # The client's ACK of the handshake (ACK alone, no data yet) is dropped at the server.
    rules = {f: ["INPUT", "-p", "tcp", "--dport", str(p), "--tcp-flags", "SYN,ACK,FIN,RST",
                 "ACK", "-j", "DROP"] for f, p in ports.items()}
    before, kernel = daemon.metrics(), kernel_counters()
    conns = {family: Connections(0, family, port) for family, port in ports.items()}
    started = time.monotonic()
    with Rules(rules):
        for family, port in ports.items():
            address_family, host = FAMILIES[family]
            conns[family].ends["client"] = [socket.create_connection((host, port), timeout=10)
                                            for _ in range(N)]
        # Each request retransmits its SYN-ACK 1 s after the first, the next 2 s later.
        wait_for("every request to retransmit its SYN-ACK", lambda: counters_delta(kernel)[
            "TCPSynRetrans"] >= len(ports) * N, timeout=2.5, interval=0.02)
    dropped = time.monotonic() - started
    for family in ports:
        for client in conns[family].ends["client"]:
            client.sendall(b"y")  # completes the handshake at the server
        conns[family].listener.settimeout(10)
        for _ in range(N):
            server, _ = conns[family].listener.accept()
            server.settimeout(10)
            if server.recv(1) != b"y":
                fail("synack: the server did not read the client's byte")
            conns[family].ends["server"].append(server)
        conns[family].close(first="client")
    kernel = counters_delta(kernel)
    expect(kernel["TCPSynRetrans"] == len(ports) * N == kernel["sent"] == kernel["RetransSegs"],
           f"synack: handshakes held for {dropped:.2f} s, the kernel retransmitted one SYN-ACK "
           f"per connection: {describe_kernel(kernel)}")
    checks = []
    for family, port in ports.items():
        checks += orderly_life(family, port, {"SYN_RECV": N})
    settle_and_check(daemon, "synack", before, checks, [
        retransmits_equal(ports, kernel, "TCPSynRetrans")])


# A scenario whose counts only fell short runs once more on ports of its own: the build
# machines' kernel runs no BPF program for a tracepoint hit made while a thread of PID 1 is the
# current task, and counts no miss (docs/performance.md, "Tracepoint hits the kernel delivered
# to neither program"); a timer's softirq that interrupts PID 1 takes a whole round of
# retransmissions with it. Seen here in 3-5% of the runs on a loaded machine. A count above
# the expected one, a count in a series no check expects, or a second shortfall fails the test.
ATTEMPTS = 2


def run_scenario(daemon, name, attempt_ports):
    for attempt, ports in enumerate(attempt_ports, 1):
        started, mark = time.monotonic(), len(failures)
        globals()[f"scenario_{name}"](daemon, ports)
        print(f"{name}: {time.monotonic() - started:.2f} s", flush=True)
        failed = failures[mark:]
        if not failed or attempt == len(attempt_ports) or not all(short for _, short in failed):
            return
        del failures[mark:]
        print(f"note: {name}: {len(failed)} counts fell short, nothing counted elsewhere: once "
              f"more on other ports (the kernel ran no program for some hits)", flush=True)


def main():
    global marker_port
    [binary] = test_arguments(__doc__, 1)
    enter_own_network_namespace()
    started = time.monotonic()
    write_sysctl("tcp_syn_retries", 1)
    if os.path.exists("/proc/sys/net/ipv4/tcp_syn_linear_timeouts"):
        # Else the first SYN retransmissions are 1 s apart: 2 of them within the 3 s.
        write_sysctl("tcp_syn_linear_timeouts", 0)
    # Ports for each scenario's attempts: one per family and attempt.
    ports = {name: [{family: free_port() for family in FAMILIES} for _ in range(ATTEMPTS)]
             for name in SCENARIOS}
    marker_port = free_port()
    listed = ", ".join(str(p) for name in SCENARIOS for each in ports[name]
                       for p in each.values()) + f", {marker_port}"
    print("ports: " + ", ".join(f"{name} {ports[name]}" for name in SCENARIOS))
    workdir = scratch_dir("close-reasons")
    with Daemon(binary, CONFIG.format(ports=listed), workdir) as daemon:
        for name in os.environ.get("CLOSE_REASONS_SCENARIOS", " ".join(SCENARIOS)).split():
            run_scenario(daemon, name, ports[name])
        values = daemon.metrics()
        lost = sample(values, "tcpstatesd_events_lost_total")
        by_reason = {key: value for key, value in values.items()
                     if key.startswith("tcpstatesd_events_lost_total{") and value}
        expect(lost == 0, f"tcpstatesd_events_lost_total {lost:g} {by_reason or ''}")
        daemon.stop()
    print(f"{len(SCENARIOS)} scenarios in {time.monotonic() - started:.1f} s")
    if failures:
        print(f"FAIL: {len(failures)} checks failed", file=sys.stderr)
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()

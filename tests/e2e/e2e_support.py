"""Helpers shared by the end-to-end tests that run the real daemon."""
import errno
import fcntl
import gzip
import http.client
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


# The exit code of a test that cannot run here: CTest reports it as skipped (SKIP_RETURN_CODE
# in tests/CMakeLists.txt).
SKIPPED = 77


def require_tools(*tools):
    """Fails naming the first of `tools` that is not installed."""
    for tool in tools:
        if not shutil.which(tool):
            fail(f"{tool} is not installed (.ci/install-deps installs it)")


def cannot_run_here(reason):
    """Skips the test (exit 77), or fails it in CI (CI=true), so that CI never passes by
    skipping."""
    if os.environ.get("CI") == "true":
        fail(reason)
    print(f"skipped: {reason}")
    sys.exit(SKIPPED)


def require_root():
    """Returns True as root. Otherwise the test cannot run here (cannot_run_here())."""
    if os.geteuid() == 0:
        return True
    cannot_run_here("needs root to load the BPF program")


def test_arguments(usage, count):
    """The script's `count` arguments (else `usage` and exit 1), once root is known: outside
    CI a non-root run is skipped (exit 77), in CI it fails."""
    if len(sys.argv) != count + 1:
        fail(usage)
    require_root()
    return sys.argv[1:]


def in_new_network_namespace(argv):
    """argv run in a network namespace of its own, with its loopback up."""
    return ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv]


def in_own_network_namespace():
    """Re-executes the running script in a new network namespace with loopback up (once), so
    that the daemon, the traffic and the scrapes are the test's alone."""
    if os.environ.get("TCPSTATESD_TEST_NETNS") == "1":
        return
    os.environ["TCPSTATESD_TEST_NETNS"] = "1"
    argv = in_new_network_namespace([sys.executable, *sys.argv])
    os.execvp(argv[0], argv)


def cgroup2_mount():
    """Where the cgroup v2 file system is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified
    in systemd's hybrid layout)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, after = line.partition(" - ")
            if after.split()[:1] == ["cgroup2"]:
                return fields.split()[4]
    fail("no cgroup2 file system is mounted")


class Cgroups:
    """Cgroups of the test's own, `names` under one parent made for it in the cgroup2 mount,
    removed (with the parent) at the end of a with block, once their processes have exited.
    `path(name)` is the directory, `cgroup_path(name)` the path as /proc/PID/cgroup and
    `trace --cgroup` show it."""

    def __init__(self, test, names):
        self.mount = cgroup2_mount()
        self.parent = f"/tcpstatesd-{test}-{os.getpid()}"
        self.names = list(names)
        for name in ["", *self.names]:
            os.mkdir(self.path(name) if name else self.mount + self.parent)

    def path(self, name):
        return self.mount + self.cgroup_path(name)

    def cgroup_path(self, name):
        return f"{self.parent}/{name}"

    def wrap(self, name, argv):
        """argv run in cgroup `name`."""
        return in_cgroup(self.path(name), argv)

    def enter(self, name):
        """Moves this process into cgroup `name` ("" : back to the mount's root)."""
        with open((self.path(name) if name else self.mount) + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def __enter__(self):
        return self

    def __exit__(self, *error):
        for name in [*self.names, ""]:
            path = self.path(name) if name else self.mount + self.parent
            wait_for(f"cgroup {path} to be removable",
                     lambda: _try_rmdir(path), timeout=10, interval=0.1)


def in_cgroup(path, argv):
    """argv run in the cgroup whose directory is `path` (its shell moves itself there, then
    execs argv)."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', path, *argv]


def memory_cgroup_v1_mount():
    """Where cgroup v1's memory controller is mounted. Without one the test cannot run here
    (cannot_run_here())."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, after = line.partition(" - ")
            fstype, _, options = (after.split() + ["", "", ""])[:3]
            if fstype == "cgroup" and "memory" in options.split(","):
                return fields.split()[4]
    cannot_run_here("no cgroup v1 memory controller is mounted")


class MemoryCgroup:
    """A cgroup v1 memory cgroup of the test's own, what the BPF maps a process of it creates
    are charged to besides its own memory; removed at the end of a with block, once its
    processes have exited. With `oom_kill_disable`, a process of it that faults at the limit
    waits until the limit is lifted instead of being killed."""

    def __init__(self, test, oom_kill_disable=False):
        self.path = f"{memory_cgroup_v1_mount()}/tcpstatesd-{test}-{os.getpid()}"
        os.mkdir(self.path)
        if oom_kill_disable:
            self.write("memory.oom_control", 1)

    def read(self, name):
        with open(f"{self.path}/{name}") as f:
            return f.read()

    def write(self, name, value):
        with open(f"{self.path}/{name}", "w") as f:
            f.write(str(value))

    def limit_to_usage(self):
        """The limit set to the usage now; retried while the usage grows between the read and
        the write (the kernel then refuses a limit below it, EBUSY). Returns the limit."""
        for _ in range(10):
            usage = int(self.read("memory.usage_in_bytes"))
            try:
                self.write("memory.limit_in_bytes", usage)
                return usage
            except OSError:
                continue
        fail(f"could not limit {self.path} to its usage")

    def wrap(self, argv):
        """argv run in the cgroup."""
        return in_cgroup(self.path, argv)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        wait_for(f"memory cgroup {self.path} to be removable", lambda: _try_rmdir(self.path),
                 timeout=10, interval=0.1)


def _try_rmdir(path):
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def scratch_dir(name):
    """A new directory for one test's files, named after the test."""
    return tempfile.mkdtemp(prefix=f"tcpstatesd-{name}-")


# The ports the tests choose for themselves (free_port) lie below the kernel's ephemeral range,
# so that no client socket of any network namespace is given one by connect(): the tracepoints
# see every namespace, and a test selects its own traffic by port. Each is reserved for one
# test process at a time, in every network namespace, by a lock file held until that process
# exits; tests/integration/loopback.cpp takes the same locks. The range starts above the
# fixed ports of tests/e2e/scale_test.py (10000-10874, in a namespace of its own).
PORT_LOCKS = "/tmp/tcpstatesd-test-ports"
LOWEST_PORT = 11000
_reserved_ports = []  # the open lock files of this process's ports


def first_ephemeral_port():
    """The lowest port connect() is given (net.ipv4.ip_local_port_range)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def _bindable(port):
    """Whether `port` is free on both loopback addresses of this network namespace now."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return False
                raise
    return True


def free_port():
    """A loopback port below the ephemeral range that no other test holds, free on 127.0.0.1
    and ::1 of this network namespace, reserved for this process until it exits."""
    top = first_ephemeral_port()
    if top <= LOWEST_PORT + 1000:
        fail(f"ip_local_port_range starts at {top}: no room below it for the tests' ports")
    os.makedirs(PORT_LOCKS, exist_ok=True)
    span = top - LOWEST_PORT
    start = random.randrange(span)
    for attempt in range(span):
        port = LOWEST_PORT + (start + attempt) % span
        lock = open(os.path.join(PORT_LOCKS, str(port)), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another test holds it
            lock.close()
            continue
        if _bindable(port):
            _reserved_ports.append(lock)
            return port
        lock.close()
    fail(f"no free port from {LOWEST_PORT} to {top - 1} (reservations in {PORT_LOCKS})")


def wait_for(what, predicate, timeout=30.0, interval=0.2, seen=None):
    """Polls `predicate` until it returns a true value, which is returned. On timeout the
    failure says what `seen()` (if given) says was seen instead."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as error:  # the server may not be up yet
            last_error = error
        time.sleep(interval)
    fail(f"timed out after {timeout} s waiting for {what}" +
         (f"; seen: {seen()}" if seen else "") + f" (last error: {last_error})")


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


def status_kib(pid, field):
    """A size in KiB from /proc/PID/status, e.g. field "VmRSS" or "VmHWM"."""
    match = re.search(rf"^{field}:\s*(\d+) kB", read_text(f"/proc/{pid}/status"), re.M)
    if not match:
        fail(f"no {field} in /proc/{pid}/status")
    return int(match.group(1))


def bpf_fds(pid):
    """What process `pid` holds of BPF, from /proc/PID/fdinfo: (ids of the programs its program
    and link fds refer to, number of its link fds); nothing once it has exited."""
    programs, links = set(), 0
    fdinfo = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(fdinfo)
    except FileNotFoundError:
        return programs, links
    for fd in fds:
        try:
            text = read_text(os.path.join(fdinfo, fd))
        except OSError:  # closed meanwhile
            continue
        links += "link_type:" in text
        match = re.search(r"^prog_id:\s*(\d+)", text, re.M)
        if match:
            programs.add(int(match.group(1)))
    return programs, links


def program_ids_of(pid):
    """Ids of the BPF programs process `pid` holds (bpf_fds)."""
    return bpf_fds(pid)[0]


def loaded_program_ids():
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {int(i) for i in re.findall(r"^(\d+): ", out, re.M)}


def parse_samples(text):
    """The samples of an exposition: {'name{labels}': value}."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def scrape_bytes(target, path="/metrics", gzip_ok=False, connection=None, accept=None):
    """GET http://target/path (target "host:port") over `connection` (an
    http.client.HTTPConnection the caller keeps alive), else over a connection of its own:
    (body, gunzipped, bytes on the wire). `gzip_ok` asks for a gzip body, `accept` is the
    Accept header (none by default: the text format). Any status but 200 raises OSError, as a
    refused connection does. bench/run.py times it over a kept-alive connection: what it does
    is part of the benchmark's scrape latency."""
    own = connection is None
    if own:
        connection = http.client.HTTPConnection(target, timeout=10)
    try:
        headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
        if accept:
            headers["Accept"] = accept
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"GET {path} from {target}: HTTP {response.status}")
        wire = len(body)
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body, wire
    finally:
        if own:
            connection.close()


def scrape_text(target, path="/metrics", gzip_ok=False, connection=None):
    """scrape_bytes() of the text format, decoded: (text, bytes on the wire)."""
    body, wire = scrape_bytes(target, path, gzip_ok, connection)
    return body.decode(), wire


def scrape(target, path="/metrics", connection=None):
    """The samples of one scrape: {'name{labels}': value}."""
    return parse_samples(scrape_text(target, path, connection=connection)[0])


class KeptAlive:
    """Scrapes over one kept-alive connection: a comparison with ss that must hold while
    nothing moves cannot use scrapes that each leave a socket in TIME_WAIT. Its own connection
    is two ESTABLISHED sockets of the daemon's namespace, the same all along."""

    def __init__(self, target):
        self.target = target
        self.connection = http.client.HTTPConnection(target, timeout=10)

    def metrics(self):
        return scrape(self.target, connection=self.connection)

    def close(self):
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.close()


# The walk tests give the daemon's walks this share of a CPU: a walk of a test host's few sockets
# then waits the daemon's shortest pause between walks (CountUpkeep::kMinWalkInterval), as it
# does at the default share.
WALK_CPU_PERCENT = 50
WALK_PERIOD_S = 5.0
# A walk that starts after an event comes within one period; ten leave room for a loaded machine.
WALK_TIMEOUT_S = 10 * WALK_PERIOD_S


def walk_started_after(values, when):
    """Whether the daemon's last walk of the sockets (which gives the gauge its TIME_WAIT and
    request sockets) started after `when` (time.time())."""
    return (values["tcpstatesd_socket_walk_timestamp_seconds"]
            - values["tcpstatesd_socket_walk_duration_seconds"]) > when


def http_status(target, path):
    try:
        with urllib.request.urlopen(f"http://{target}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def write_config(path, target, body):
    """A daemon configuration: a web section listening on `target`, then `body` (YAML).
    Readable by any user: a test may run the daemon as another user than root."""
    with open(path, "w") as f:
        f.write(f'web:\n  listen_addresses: ["{target}"]\n{body}')
    os.chmod(path, 0o644)


class Daemon:
    """The daemon started on a config body (YAML, web section added: listening on `target`,
    by default a free loopback port) in a scratch dir, with extra command-line `args`, under
    a `wrapper` command that execs it (as failed_start). It is up once `ready(daemon)` is true
    (default: /-/ready answers 200 over plain HTTP) and must then hold BPF programs. On failure the caller prints `log()` (a with block does it,
    and kills the daemon); `stop()` checks a clean SIGTERM exit."""

    def __init__(self, binary, body, workdir, args=(), ready=None, wrapper=(), target=None):
        self.target = target or f"127.0.0.1:{free_port()}"
        self.port = int(self.target.rsplit(":", 1)[1])
        self.config = os.path.join(workdir, "tcpstatesd.yaml")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.write_config(body)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([*wrapper, binary, "--config", self.config, *args],
                                            stdout=log, stderr=subprocess.STDOUT)
        ready = ready or (lambda daemon: http_status(daemon.target, "/-/ready") == 200)
        wait_for("the daemon to be ready",
                 lambda: self.process.poll() is not None or ready(self))
        if self.process.poll() is not None:
            fail(f"the daemon exited with {self.process.returncode}:\n{self.log()}")
        self.program_ids = program_ids_of(self.process.pid)
        if not self.program_ids:
            fail("the daemon holds no BPF program")

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if error_type is not None:
            self.kill()
            print(self.log(), file=sys.stderr)

    def write_config(self, body):
        """Replaces the configuration file (read again on SIGHUP)."""
        write_config(self.config, self.target, body)

    def metrics(self):
        return scrape(self.target)

    def log(self):
        return read_text(self.log_path)

    def send_signal(self, number):
        self.process.send_signal(number)

    def rss_kib(self):
        return status_kib(self.process.pid, "VmRSS")

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        """SIGTERM: the daemon must exit 0 within a second and leave none of its programs."""
        if self.process.poll() is not None:
            fail(f"the daemon died early with exit code {self.process.returncode}")
        self.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail("the daemon did not exit within 5 s of SIGTERM")
        elapsed = time.monotonic() - started
        if code != 0:
            fail(f"the daemon exited with {code} on SIGTERM")
        if elapsed > 1.0:
            fail(f"SIGTERM took {elapsed:.2f} s to stop the daemon (limit 1 s)")
        # The kernel frees a program after an RCU grace period, not at the last close().
        wait_for(f"programs {sorted(self.program_ids)} to be unloaded after the daemon exited",
                 lambda: not self.program_ids & loaded_program_ids(), timeout=3, interval=0.05)


def failed_start(binary, body, workdir, wrapper=()):
    """Starts the daemon on a config body (as Daemon does) under a `wrapper` command (e.g.
    unshare or setpriv), expecting it to exit at start: (exit code, output lines)."""
    config = os.path.join(workdir, "tcpstatesd.yaml")
    write_config(config, f"127.0.0.1:{free_port()}", body)
    result = subprocess.run([*wrapper, binary, "--config", config], capture_output=True,
                            text=True, timeout=30)
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()


def expect_one_error(what, code, lines, patterns):
    """A start that failed as it should: exit 1 and exactly one error line, matching every
    pattern."""
    errors = [line for line in lines if re.search(r"\berror\b|critical", line, re.I)]
    if code != 1:
        fail(f"{what}: exit code {code}, expected 1; output:\n" + "\n".join(lines))
    if len(errors) != 1:
        fail(f"{what}: expected one error line, got:\n" + "\n".join(lines))
    for pattern in patterns:
        if not re.search(pattern, errors[0]):
            fail(f"{what}: the error line does not match {pattern!r}: {errors[0]}")
    print(f"{what}: {errors[0]}")


def in_private_mounts(script):
    """A wrapper that runs `script` (shell) in a mount namespace of its own, then the command
    after it (the daemon)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{script} && exec "$0" "$@"']


TRACEFS = "/sys/kernel/tracing"


def with_tracefs(argv):
    """argv in a mount namespace of its own, with tracefs mounted there unless the host's is.

    perf and libbpf-tools' tcpstates look tracepoints up in tracefs. The namespace starts with
    a copy of the host's mounts: where the host has tracefs mounted (most systemd hosts) the
    copy is used, as mounting it a second time on the same path fails ("nodev already
    mounted"); elsewhere the mount is made in the namespace only, so the host stays as it is
    and no other job's unmount can pull tracefs from under a run."""
    return in_private_mounts(
        f"{{ mountpoint -q {TRACEFS} || mount -t tracefs nodev {TRACEFS}; }}") + argv


FAMILIES = {"ipv4": (socket.AF_INET, "127.0.0.1"), "ipv6": (socket.AF_INET6, "::1")}


class Connections:
    """`count` loopback TCP connections (family "ipv4" or "ipv6"), all ESTABLISHED once
    constructed, to a server of their own listening on `port` (0: any free one) from before
    the first connect until close(). So the traffic includes the listener's CLOSE->LISTEN and
    LISTEN->CLOSE, and, when the client closes first, 5 transitions of the server's socket per
    connection (LISTEN->SYN_RECV->ESTABLISHED->CLOSE_WAIT->LAST_ACK->CLOSE). Every socket
    has a 10 s timeout. `sources`, when given, holds the (address, port) each client binds to
    before it connects, one per connection (else the kernel picks the client's address and
    port)."""

    def __init__(self, count, family="ipv4", port=0, sources=None):
        address_family, host = FAMILIES[family]
        self.listener = socket.socket(address_family)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.ends = {"client": [], "server": []}
        sources = iter(sources) if sources is not None else itertools.repeat(None)
        for _ in range(count):
            client = socket.create_connection((host, self.port), timeout=10,
                                              source_address=next(sources))
            server, _ = self.listener.accept()
            server.settimeout(10)
            self.ends["client"].append(client)
            self.ends["server"].append(server)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.close()

    def close_side(self, side):
        """Closes the ends of `side` ("client" or "server"), newest first; their peers wait
        in CLOSE_WAIT."""
        while self.ends[side]:
            self.ends[side].pop().close()

    def close(self, first="client"):
        """Closes what is still open: `first`'s ends, then each of the other side's once it
        has read the FIN; then the listener."""
        self.close_side(first)
        other = "server" if first == "client" else "client"
        for end in self.ends[other]:
            if end.recv(1) != b"":
                fail(f"expected EOF on the {other} side")
            end.close()
        self.ends[other] = []
        self.listener.close()


def connections(count, family="ipv4", port=0, first="client", sources=None):
    """Connections(count, family, port, sources), closed at once with `first` closing
    first."""
    Connections(count, family, port, sources).close(first)


def refused_connect(family="ipv4"):
    """A loopback connect refused with RST (SYN_SENT -> CLOSE): the port is bound but has no
    listener."""
    address_family, host = FAMILIES[family]
    with socket.socket(address_family) as closed:
        closed.bind((host, 0))
        try:
            socket.create_connection((host, closed.getsockname()[1]), timeout=2).close()
        except ConnectionRefusedError:
            return
    fail("a connect to a port without listener succeeded")


def new_listeners(count, avoid=()):
    """`count` listeners on 127.0.0.1 (ports from bind(0)), each a new value for the daemon's
    port label: none on a port in `avoid` (bind(0) may hand out again a port closed a moment
    ago, whose value the daemon still has). The soft open-file limit is raised as far as they
    need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 1024)), hard))
    listeners, refused = [], []
    while len(listeners) < count:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        # An avoided port stays bound until the end, so that bind(0) does not return it again.
        if listener.getsockname()[1] in avoid:
            refused.append(listener)
            continue
        listener.listen(4)
        listeners.append(listener)
    for listener in refused:
        listener.close()
    return listeners


def connect_once(listener):
    """One connection to `listener`, closed by the client first; the server reads the EOF and
    closes."""
    client = socket.create_connection(listener.getsockname(), timeout=10)
    server, _ = listener.accept()
    client.close()
    if server.recv(1) != b"":
        fail("expected EOF")
    server.close()


def connections_to_new_ports(count):
    """One connection to each of `count` new listeners, all listening before the first
    connect, each connection closed at once, then its listener: `count` port values."""
    for listener in new_listeners(count):
        connect_once(listener)
        listener.close()


def sample_name_and_labels(key):
    """'name{a="x",b="y"}' (a key of scrape()) as ('name', {'a': 'x', 'b': 'y'})."""
    name, _, rest = key.partition("{")
    return name, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def sample(values, name, **wanted):
    """Sum of the samples of `name` whose labels include `wanted` (any label order)."""
    total = 0.0
    for key, value in values.items():
        if key.partition("{")[0] != name:
            continue
        have = sample_name_and_labels(key)[1]
        if all(have.get(k) == str(v) for k, v in wanted.items()):
            total += value
    return total


def series(values, name, *labels):
    """The samples of `name` summed per value of `labels`: {(value of each label): sum},
    without the sums that are 0."""
    sums = {}
    for key, value in values.items():
        base, have = sample_name_and_labels(key)
        if base == name:
            label_values = tuple(have.get(label, "") for label in labels)
            sums[label_values] = sums.get(label_values, 0.0) + value
    return {label_values: total for label_values, total in sums.items() if total != 0}


class Background:
    """Runs `step()` every `interval` seconds on a thread of its own, within a with block."""

    def __init__(self, step, interval):
        self.step, self.interval = step, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop_event.is_set():
            self.step()
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *error):
        self.stop_event.set()
        self.thread.join()


def scrape_every_second(target, rule_files=()):
    """A Prometheus configuration that scrapes the daemon at `target` every second (job
    tcpstatesd) and evaluates `rule_files` every second."""
    rules = f"  evaluation_interval: 1s\nrule_files: {list(rule_files)}\n" if rule_files else ""
    return ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n" + rules +
            "scrape_configs:\n  - job_name: tcpstatesd\n"
            f"    static_configs:\n      - targets: ['{target}']\n")


class Prometheus:
    """A real Prometheus server on a free loopback port, configured with `config_yaml` (e.g.
    scrape_every_second()) and started with the command-line `flags` too (e.g.
    --enable-feature=...), keeping its configuration, data and log in `workdir`. stop(), or
    the end of a with block, ends it and removes its data, of no use afterwards; its
    configuration and log stay for a failure's post-mortem."""

    def __init__(self, workdir, config_yaml, flags=()):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, "prometheus.log")
        self.data_path = os.path.join(workdir, "prometheus-data")
        config_path = os.path.join(workdir, "prometheus.yml")
        with open(config_path, "w") as f:
            f.write(config_yaml)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                ["prometheus", f"--config.file={config_path}",
                 f"--storage.tsdb.path={self.data_path}",
                 f"--web.listen-address=127.0.0.1:{port}", *flags],
                stdout=subprocess.DEVNULL, stderr=log)

    def query(self, expression, at=None):
        """An instant query's vector, at `at` (Unix seconds) or now: {labels: value}, labels
        as a sorted tuple of (name, value) pairs. Fails on a query error; an OSError while
        Prometheus starts (for wait_for to retry)."""
        params = {"query": expression}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            result = json.loads(response.read())
        if result["status"] != "success":
            fail(f"query {expression!r} failed: {result}")
        return {tuple(sorted(s["metric"].items())): float(s["value"][1])
                for s in result["data"]["result"]}

    def check_running(self):
        if self.process.poll() is not None:
            fail("Prometheus exited: " + read_text(self.log_path)[-2000:])

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.stop()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.data_path, ignore_errors=True)


class HitsInInitContext:
    """Counts, while a with block runs, the hits of sock:inet_sock_set_state made while a thread
    of PID 1 is the current task, with `perf stat -p 1` and a tracepoint filter (e.g. on
    sport). The build machines' kernel runs no BPF program for those hits and counts no
    recursion miss (docs/performance.md, "Tracepoint hits the kernel delivered to neither
    program"): what no program can count. perf runs with_tracefs()."""

    def __init__(self, tracepoint_filter):
        self.filter = tracepoint_filter
        self.hits = None

    def __enter__(self):
        if shutil.which("perf") is None:
            fail("perf is not installed (Debian: linux-perf); it counts the tracepoint's hits "
                 "no program can see")
        self.perf = subprocess.Popen(
            with_tracefs(["perf", "stat", "-x,", "-e", "sock:inet_sock_set_state",
                          "--filter", self.filter, "-p", "1"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for("perf to count on every thread of PID 1", self._attached, timeout=10,
                 interval=0.05)
        return self

    def _attached(self):
        """Whether perf holds a counter per thread of PID 1 (its perf_event descriptors)."""
        if self.perf.poll() is not None:
            fail(f"perf stat exited: {self.perf.stderr.read()}")
        fds = f"/proc/{self.perf.pid}/fd"
        counters = 0
        for fd in os.listdir(fds):
            try:
                counters += os.readlink(os.path.join(fds, fd)) == "anon_inode:[perf_event]"
            except FileNotFoundError:
                pass
        return counters >= len(os.listdir("/proc/1/task"))

    def __exit__(self, *error):
        self.perf.send_signal(signal.SIGINT)
        _, report = self.perf.communicate(timeout=30)
        for line in report.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] == "sock:inet_sock_set_state":
                self.hits = int(fields[0]) if fields[0].isdigit() else 0
        if self.hits is None and error[0] is None:
            fail(f"perf stat reported no count: {report}")

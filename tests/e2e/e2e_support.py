"""Helpers shared by the end-to-end tests that run the real daemon."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def require_root():
    """Returns False (skip) outside CI when not root; in CI (CI=true) a skip is a failure."""
    if os.geteuid() == 0:
        return True
    if os.environ.get("CI") == "true":
        fail("needs root to load the BPF program")
    print("WARNING: skipped: needs root to load the BPF program")
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout=30.0, interval=0.2):
    """Polls `predicate` until it returns a true value, which is returned."""
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
    fail(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")


def program_ids_of(pid):
    """Ids of the BPF programs whose fds process `pid` holds (from /proc/PID/fdinfo)."""
    ids = set()
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            match = re.search(r"^prog_id:\s+(\d+)", open(f"{fdinfo}/{fd}").read(), re.M)
        except OSError:
            continue
        if match:
            ids.add(int(match.group(1)))
    return ids


def loaded_program_ids():
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {int(i) for i in re.findall(r"^(\d+): ", out, re.M)}


def stop_daemon(daemon, program_ids):
    """SIGTERM: the daemon must exit 0 within a second and leave none of its programs."""
    if daemon.poll() is not None:
        fail(f"the daemon died early with exit code {daemon.returncode}")
    daemon.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = daemon.wait(timeout=5)
    except subprocess.TimeoutExpired:
        daemon.kill()
        fail("the daemon did not exit within 5 s of SIGTERM")
    elapsed = time.monotonic() - started
    if code != 0:
        fail(f"the daemon exited with {code} on SIGTERM")
    if elapsed > 1.0:
        fail(f"SIGTERM took {elapsed:.2f} s to stop the daemon (limit 1 s)")
    # The kernel frees a program after an RCU grace period, not at the last close().
    deadline = time.monotonic() + 3
    while program_ids & loaded_program_ids():
        if time.monotonic() > deadline:
            fail(f"BPF programs still loaded 3 s after the daemon exited: "
                 f"{program_ids & loaded_program_ids()}")
        time.sleep(0.05)


def scrape(target, path="/metrics"):
    """The samples of one scrape: {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://{target}{path}", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def http_status(target, path):
    try:
        with urllib.request.urlopen(f"http://{target}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


class Daemon:
    """The daemon started on a config body (YAML, web section added) in a scratch dir, with
    `args` added to its command line. On failure the caller prints `log()`; `stop()` checks
    a clean SIGTERM exit."""

    def __init__(self, binary, body, workdir, args=()):
        self.target = f"127.0.0.1:{free_port()}"
        self.config = os.path.join(workdir, "tcpstatesd.yaml")
        self.log_path = os.path.join(workdir, "daemon.log")
        with open(self.config, "w") as f:
            f.write(f'web:\n  listen_addresses: ["{self.target}"]\n{body}')
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([binary, "--config", self.config, *args],
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for("the daemon to be ready",
                 lambda: self.process.poll() is None and http_status(self.target, "/-/ready")
                 == 200 or self.process.poll() is not None)
        if self.process.poll() is not None:
            fail(f"the daemon exited with {self.process.returncode}:\n{self.log()}")
        self.program_ids = program_ids_of(self.process.pid)
        if not self.program_ids:
            fail("the daemon holds no BPF program")

    def metrics(self):
        return scrape(self.target)

    def log(self):
        self.log_file.flush()
        return open(self.log_path).read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        stop_daemon(self.process, self.program_ids)
        self.log_file.close()


def rss_kib(pid):
    """The resident set size of process `pid` (VmRSS in /proc/PID/status), in KiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    fail("no VmRSS")


def sample(values, name, **wanted):
    """Sum of the samples of `name` whose labels include `wanted` (any label order)."""
    total = 0.0
    for key, value in values.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == str(v) for k, v in wanted.items()):
            total += value
    return total


class Prometheus:
    """A real Prometheus server on a free loopback port, configured with `config_yaml`,
    keeping its configuration, data and log in `workdir`. stop() ends it."""

    def __init__(self, workdir, config_yaml):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(workdir, "prometheus.log")
        config_path = os.path.join(workdir, "prometheus.yml")
        with open(config_path, "w") as f:
            f.write(config_yaml)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                ["prometheus", f"--config.file={config_path}",
                 f"--storage.tsdb.path={os.path.join(workdir, 'prometheus-data')}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log)

    def check_running(self):
        if self.process.poll() is not None:
            fail("Prometheus exited: " + open(self.log_path).read()[-2000:])

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)

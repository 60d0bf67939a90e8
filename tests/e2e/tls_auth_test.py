#!/usr/bin/env python3
"""TLS and basic auth (--web.config.file): the real daemon, certificates made here by openssl.

Usage: tls_auth_test.py TCPSTATESD_BINARY

1. TLS + basic auth: HTTPS with the right password 200; none 401 with WWW-Authenticate;
   wrong password and unknown user 401; /-/healthy is protected too; plain HTTP to the TLS
   port gets no HTTP answer and the server keeps serving.
2. A real Prometheus scrapes it (scheme https, tls_config.ca_file, basic_auth): up == 1.
3. SIGHUP with a new password: the old one gets 401, the new one 200.
4. SIGHUP with min_version TLS13 (new certificates settings: the server restarts in place):
   a TLS 1.2-only client is refused, TLS 1.3 works.
5. SIGHUP with RequireAndVerifyClientCert: no client certificate or one from another CA is
   refused in the handshake; the CA's client certificate gets 200.
   Then RequestClientCert, RequireAnyClientCert and VerifyClientCertIfGiven, each checked
   with no certificate, another CA's and the CA's.
6. SIGHUP with a broken web config: reload gauge 0, the previous settings still serve.
7. SIGHUP with a certificate GnuTLS refuses: the same, the log names the files.
"""
import os
import re
import signal
import socket
import subprocess
import urllib.parse
import json

from e2e_support import Daemon, Prometheus, fail, scratch_dir, test_arguments, wait_for

USER = "prometheus"


def run(*args, **kwargs):
    return subprocess.run(list(args), capture_output=True, text=True, **kwargs)


def bcrypt(password):
    """A bcrypt hash from htpasswd (apache2-utils), cost 5 to keep the test fast."""
    out = run("htpasswd", "-nbBC", "5", "x", password, check=True).stdout.strip()
    return out.split(":", 1)[1]


def make_pki(d):
    def openssl(*args):
        result = run("openssl", *args, cwd=d)
        if result.returncode != 0:
            fail(f"openssl {' '.join(args)}: {result.stderr}")

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", f"/CN=tcpstatesd test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("stranger", "other-ca", "client.ext")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt")


class Client:
    def __init__(self, d, port):
        self.d = d
        self.port = port

    def curl(self, path="/metrics", user=None, password=None, cert=None, extra=()):
        """(HTTP status or None when no HTTP answer, headers, body, curl's stderr)."""
        args = ["curl", "-sS", "--max-time", "10", "-D", "-", "--cacert",
                os.path.join(self.d, "ca.crt")]
        if user is not None:
            args += ["-u", f"{user}:{password}"]
        if cert:
            args += ["--cert", os.path.join(self.d, f"{cert}.crt"),
                     "--key", os.path.join(self.d, f"{cert}.key")]
        args += list(extra) + [f"https://127.0.0.1:{self.port}{path}"]
        result = run(*args)
        match = re.match(r"HTTP/\S+ (\d+)", result.stdout)
        return (int(match.group(1)) if match else None, result.stdout, result.stderr)

    def status(self, *args, **kwargs):
        return self.curl(*args, **kwargs)[0]

    def metric(self, name, password):
        status, text, err = self.curl(user=USER, password=password)
        if status != 200:
            fail(f"scrape for {name}: status {status}: {err}")
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else None

    def s_client(self, version_flag, cert=None):
        """True when `openssl s_client` completes a handshake with the given version flag."""
        args = ["openssl", "s_client", version_flag, "-connect", f"127.0.0.1:{self.port}",
                "-CAfile", os.path.join(self.d, "ca.crt"), "-verify_return_error"]
        if cert:
            args += ["-cert", os.path.join(self.d, f"{cert}.crt"),
                     "-key", os.path.join(self.d, f"{cert}.key")]
        result = subprocess.run(args, input="Q\n", capture_output=True, text=True, timeout=20)
        return result.returncode == 0 and "Cipher is (NONE)" not in result.stdout


def expect(what, actual, expected):
    if actual != expected:
        fail(f"{what}: got {actual!r}, expected {expected!r}")
    print(f"ok: {what}: {actual!r}")


def plain_http_to_tls_port(port):
    """What a plain-HTTP client gets from the TLS port: never an HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return data


def prometheus_scrapes(d, port, password):
    prometheus = Prometheus(d, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                               "scrape_configs:\n  - job_name: tcpstatesd\n    scheme: https\n"
                               f"    tls_config:\n      ca_file: {d}/ca.crt\n"
                               f"    basic_auth:\n      username: {USER}\n"
                               f"      password: {password}\n"
                               f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode(
        {"query": 'up{job="tcpstatesd"}'})

    def up():
        out = run("curl", "-sf", "--max-time", "5", url).stdout
        result = json.loads(out)["data"]["result"] if out else []
        return result and float(result[0]["value"][1]) == 1
    try:
        wait_for("Prometheus to scrape the daemon over TLS with basic auth (up == 1)", up,
                 timeout=60)
        print("ok: a real Prometheus scrapes over HTTPS with basic auth: up == 1")
        body = run("curl", "-sf", f"{prometheus.url}/api/v1/targets").stdout
        health = json.loads(body)["data"]["activeTargets"][0]
        expect("Prometheus' target health", (health["health"], health["scrapeUrl"]),
               ("up", f"https://127.0.0.1:{port}/metrics"))
    finally:
        prometheus.stop()


def main():
    [binary] = test_arguments(__doc__, 1)
    for tool in ("openssl", "curl", "htpasswd", "prometheus"):
        if run("sh", "-c", f"command -v {tool}").returncode != 0:
            fail(f"{tool} is not installed (.ci/install-deps installs it)")
    d = scratch_dir("tls")
    make_pki(d)
    web = os.path.join(d, "web.yml")

    def write_web(password, tls_extra=""):
        # Relative paths: resolved against the web config's directory.
        with open(web, "w") as f:
            f.write("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                    f"{tls_extra}basic_auth_users:\n  {USER}: '{bcrypt(password)}'\n")

    write_web("first secret")
    with Daemon(binary, "", d, args=["--web.config.file", web], ready=lambda daemon: Client(
            d, daemon.port).status("/-/ready", USER, "first secret") == 200) as daemon:
        check = run(binary, "--check-config", "--config", daemon.config, "--web.config.file", web)
        expect("--check-config with the web config",
               (check.returncode, check.stdout.splitlines()[-1]),
               (0, f"tcpstatesd: web config OK ({web}: TLS, 1 basic auth users)"))
        port = daemon.port
        client = Client(d, port)

        # 1. Basic auth over TLS.
        expect("right password", client.status(user=USER, password="first secret"), 200)
        status, headers, _ = client.curl()
        expect("no credentials", status, 401)
        if not re.search(r'^WWW-Authenticate: Basic realm="tcpstatesd"', headers, re.M | re.I):
            fail(f"no WWW-Authenticate header on the 401:\n{headers}")
        print("ok: the 401 carries WWW-Authenticate: Basic realm=\"tcpstatesd\"")
        expect("wrong password", client.status(user=USER, password="wrong"), 401)
        expect("unknown user", client.status(user="mallory", password="first secret"), 401)
        expect("/-/healthy without credentials", client.status("/-/healthy"), 401)
        expect("/-/healthy with credentials",
               client.status("/-/healthy", USER, "first secret"), 200)
        answer = plain_http_to_tls_port(port)
        if answer.startswith(b"HTTP/"):
            fail(f"plain HTTP on the TLS port got an HTTP answer: {answer[:80]!r}")
        print(f"ok: plain HTTP to the TLS port: {len(answer)} bytes, no HTTP answer")
        expect("HTTPS after the plain-HTTP client",
               client.status(user=USER, password="first secret"), 200)

        # 2. A real Prometheus.
        prometheus_scrapes(d, port, "first secret")

        gauge = "tcpstatesd_config_last_reload_successful"

        def reload(old_password, password, expect_success):
            before = client.metric("tcpstatesd_config_last_reload_success_timestamp_seconds",
                                   old_password)
            daemon.send_signal(signal.SIGHUP)
            if expect_success:
                wait_for("the reload to succeed", lambda: client.status(
                    user=USER, password=password) == 200 and client.metric(
                    "tcpstatesd_config_last_reload_success_timestamp_seconds", password) > before)
            else:
                wait_for("the reload to fail", lambda: client.metric(gauge, password) == 0)

        # 3. New password.
        write_web("second secret")
        reload("first secret", "second secret", True)
        expect("old password after reload", client.status(user=USER, password="first secret"), 401)
        expect("new password after reload", client.status(user=USER, password="second secret"), 200)

        # 4. TLS 1.3 only.
        expect("TLS 1.2 client before min_version TLS13", client.s_client("-tls1_2"), True)
        write_web("second secret", "  min_version: TLS13\n")
        reload("second secret", "second secret", True)
        expect("TLS 1.2-only client with min_version TLS13", client.s_client("-tls1_2"), False)
        expect("TLS 1.3 client with min_version TLS13", client.s_client("-tls1_3"), True)

        # 5. Client certificates required and verified.
        write_web("second secret", "  client_auth_type: RequireAndVerifyClientCert\n"
                                   "  client_ca_file: ca.crt\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("client certificates to be required",
                 lambda: client.status(user=USER, password="second secret") is None)
        status, _, err = client.curl(user=USER, password="second secret")
        expect("no client certificate", status, None)
        print(f"   (curl: {err.strip()})")
        expect("client certificate from another CA",
               client.status(user=USER, password="second secret", cert="stranger"), None)
        expect("client certificate from the CA",
               client.status(user=USER, password="second secret", cert="client"), 200)
        expect("reload gauge after the client-certificate reload", client.curl(
            user=USER, password="second secret", cert="client")[1].count(f"\n{gauge} 1"), 1)

        # 5b. The other client_auth_types: who gets through (None: refused in the handshake).
        modes = {
            "RequestClientCert": (200, 200, 200),
            "RequireAnyClientCert": (None, 200, 200),
            "VerifyClientCertIfGiven": (200, None, 200),
        }
        for mode, (no_cert, stranger, signed) in modes.items():
            ca = "  client_ca_file: ca.crt\n" if mode == "VerifyClientCertIfGiven" else ""
            write_web("second secret", f"  client_auth_type: {mode}\n{ca}")
            daemon.send_signal(signal.SIGHUP)
            wait_for(f"{mode} to apply", lambda: client.status(
                user=USER, password="second secret", cert="stranger") == stranger and
                client.status(user=USER, password="second secret") == no_cert)
            expect(f"{mode}: no certificate, another CA's, the CA's", tuple(
                client.status(user=USER, password="second secret", cert=c)
                for c in (None, "stranger", "client")), (no_cert, stranger, signed))
        write_web("second secret", "  client_auth_type: RequireAndVerifyClientCert\n"
                                   "  client_ca_file: ca.crt\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("RequireAndVerifyClientCert again",
                 lambda: client.status(user=USER, password="second secret") is None)

        # 6. Broken web config: kept.
        with open(web, "w") as f:
            f.write("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                    "  clientauth: RequireAnyClientCert\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the broken reload to be refused", lambda: f"\n{gauge} 0" in client.curl(
            user=USER, password="second secret", cert="client")[1])
        expect("old settings after a broken web config",
               client.status(user=USER, password="second secret", cert="client"), 200)
        logged = daemon.log()
        if f"{web}:4:3: tls_server_config: unknown key \"clientauth\"" not in logged:
            fail(f"the log does not name the broken line:\n{logged[-2000:]}")
        print("ok: the log names web.yml:4:3 and the unknown key")

        # 7. A certificate GnuTLS refuses (a key where the certificate belongs): the reload is
        # refused and the running server kept. First a good reload, so that the gauge is 1.
        write_web("second secret", "  client_auth_type: RequireAndVerifyClientCert\n"
                                   "  client_ca_file: ca.crt\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("a good reload", lambda: f"\n{gauge} 1" in client.curl(
            user=USER, password="second secret", cert="client")[1])
        with open(web, "w") as f:
            f.write("tls_server_config:\n  cert_file: ca.key\n  key_file: server.key\n"
                    f"basic_auth_users:\n  {USER}: '{bcrypt('second secret')}'\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for("the refused certificate to be reported",
                 lambda: "tls_server_config: cert_file" in daemon.log())
        expect("old TLS settings after a certificate GnuTLS refuses",
               client.status(user=USER, password="second secret", cert="client"), 200)
        expect("reload gauge after it", f"\n{gauge} 0" in client.curl(
            user=USER, password="second secret", cert="client")[1], True)

        daemon.stop()
    print("PASS")


if __name__ == "__main__":
    main()

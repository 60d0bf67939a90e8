#!/usr/bin/env python3
"""Socket activation: --web.systemd-socket serves on the sockets systemd passes.

Usage: socket_activation_test.py TCPSTATESD_BINARY

1. Under `systemd-socket-activate -l 127.0.0.1:PORT` (which listens and execs the daemon on
   the first connection, passing the socket as systemd does): the first request starts the
   daemon, /-/ready and /metrics answer on PORT, nothing listens on web.listen_addresses,
   and SIGTERM stops it cleanly.
2. --web.systemd-socket without any socket passed: exit 1, one error line naming the flag
   and LISTEN_FDS.
3. A datagram socket passed: exit 1, one error line saying it is not a listening stream
   socket.
"""
import socket
import subprocess

from e2e_support import (Daemon, expect_one_error, fail, failed_start, free_port, http_status,
                         scrape, scratch_dir, test_arguments)

WITH_FLAG = ["sh", "-c", 'exec "$0" "$@" --web.systemd-socket']


def activated_part(binary, workdir):
    activation = f"127.0.0.1:{free_port()}"
    with Daemon(binary, "", workdir, args=["--web.systemd-socket"],
                wrapper=["systemd-socket-activate", "-l", activation],
                ready=lambda daemon: http_status(activation, "/-/ready") == 200) as daemon:
        values = scrape(activation)
        if not any(name.startswith("tcpstatesd_build_info") for name in values):
            fail(f"no tcpstatesd_build_info in the metrics served on {activation}")
        try:
            socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
            fail(f"something listens on web.listen_addresses ({daemon.target}) as well")
        except ConnectionRefusedError:
            pass
        if f'"systemd socket {activation}"' not in daemon.log():
            fail(f"the log does not name the systemd socket {activation}:\n{daemon.log()}")
        daemon.stop()
    print(f"socket activation: started by the first request on {activation}, "
          f"{len(values)} samples served, web.listen_addresses unused")


def datagram_part(binary, workdir):
    port = free_port()
    config = f"{workdir}/tcpstatesd.yaml"
    with subprocess.Popen(["systemd-socket-activate", "--datagram", "-l", f"127.0.0.1:{port}",
                           binary, "--config", config, "--web.systemd-socket"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            output, _ = process.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:  # waiting for a datagram, as expected
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(b"start", ("127.0.0.1", port))
            output, _ = process.communicate(timeout=30)
    lines = [line for line in output.splitlines() if "Listening on" not in line
             and "Communication attempt" not in line and "Execing" not in line]
    expect_one_error("a datagram socket passed", process.returncode, lines,
                     [r"--web\.systemd-socket", r"not a listening stream socket"])


def main():
    [binary] = test_arguments(__doc__, 1)
    workdir = scratch_dir("socket")
    activated_part(binary, workdir)

    code, lines = failed_start(binary, "", workdir, WITH_FLAG)
    expect_one_error("no socket passed", code, lines, [r"--web\.systemd-socket", r"LISTEN_FDS",
                                                       r"tcpstatesd\.socket"])
    datagram_part(binary, workdir)
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A hostile YAML file (a lone ",", on which yaml-cpp 0.7's LoadAll allocates forever) as the
main config or the web config (--web.config.file), with the real daemon.

Usage: hostile_yaml_test.py TCPSTATESD_BINARY

1. --check-config with either file holding ",": exit 1 within seconds, the message names
   file:1:1.
2. Starting with either file holding ",": the same.
3. A running daemon whose web config, then (after a good reload) whose main config is edited
   to "," and reloaded with SIGHUP: it keeps running on the old configuration, logs the error
   with file:1:1, tcpstatesd_config_last_reload_successful is 0, its RSS grows by less than
   RSS_BOUND_KIB, and loopback connections made afterwards are counted.
"""
import os
import re
import signal
import subprocess
import time

from e2e_support import (Daemon, connections, fail, free_port, sample, scratch_dir, test_arguments,
                         wait_for, write_config)

HOSTILE = ",\n"
EXIT_LIMIT = 5.0  # seconds; the bug ate all memory before dying
RSS_BOUND_KIB = 32 * 1024
GAUGE = "tcpstatesd_config_last_reload_successful"


def message(path):
    return re.escape(path) + r":1:1: invalid YAML: unexpected token"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def expect_quick_exit_1(what, command, path):
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 1:
        fail(f"{what}: exit code {result.returncode}, expected 1; output:\n{output}")
    if elapsed > EXIT_LIMIT:
        fail(f"{what}: took {elapsed:.1f} s to exit (limit {EXIT_LIMIT} s)")
    if not re.search(message(path), output):
        fail(f"{what}: the output does not name {path}:1:1:\n{output}")
    print(f"{what}: exit 1 in {elapsed:.2f} s")


def at_start(binary, workdir):
    good_config = os.path.join(workdir, "good.yaml")
    write_config(good_config, f"127.0.0.1:{free_port()}", "")
    good_web = os.path.join(workdir, "good-web.yml")
    write(good_web, "# plain HTTP, no users\n")
    bad = os.path.join(workdir, "hostile.yml")
    write(bad, HOSTILE)
    for mode, flags in (("--check-config", ["--check-config"]), ("start", [])):
        expect_quick_exit_1(f"{mode}, web config ','",
                            [binary, *flags, "--config", good_config, "--web.config.file", bad],
                            bad)
        expect_quick_exit_1(f"{mode}, main config ','",
                            [binary, *flags, "--config", bad, "--web.config.file", good_web], bad)


def established(daemon):
    return sample(daemon.metrics(), "tcpstates_transitions_total", family="ipv4",
                  from_state="SYN_SENT", to_state="ESTABLISHED")


def hostile_reload(daemon, path, good_text):
    """Edits `path` to HOSTILE, reloads, checks the daemon, then restores `good_text` and
    reloads it successfully."""
    rss_before = daemon.rss_kib()
    write(path, HOSTILE)
    daemon.send_signal(signal.SIGHUP)
    wait_for(f"the reload of {path} to be rejected", lambda: daemon.metrics()[GAUGE] == 0)
    wait_for(f"the log to name {path}:1:1", lambda: re.search(message(path), daemon.log()))
    # The bug grew the daemon by 2.4 GB within 4 s: watch for two seconds.
    peak = rss_before
    for _ in range(10):
        time.sleep(0.2)
        peak = max(peak, daemon.rss_kib())
    if peak - rss_before > RSS_BOUND_KIB:
        fail(f"RSS grew from {rss_before} to {peak} KiB after reloading a ',' in {path}")
    base = established(daemon)
    connections(20)
    wait_for("20 connections counted after the rejected reload",
             lambda: established(daemon) >= base + 20)
    if daemon.process.poll() is not None:
        fail(f"the daemon exited with {daemon.process.returncode}")
    print(f"SIGHUP with ',' in {os.path.basename(path)}: rejected, RSS {rss_before} -> "
          f"{peak} KiB, events still counted")

    write(path, good_text)
    daemon.send_signal(signal.SIGHUP)
    wait_for(f"{path} restored by a reload", lambda: daemon.metrics()[GAUGE] == 1)


def on_sighup(binary, workdir):
    web = os.path.join(workdir, "web.yml")
    good_web = "# plain HTTP, no users\n"
    write(web, good_web)
    with Daemon(binary, "", workdir, args=["--web.config.file", web]) as daemon:
        hostile_reload(daemon, web, good_web)
        good_config = open(daemon.config).read()
        hostile_reload(daemon, daemon.config, good_config)
        daemon.stop()


def main():
    [binary] = test_arguments(__doc__, 1)
    workdir = scratch_dir("hostile-yaml")
    at_start(binary, workdir)
    on_sighup(binary, workdir)
    print("PASS")


if __name__ == "__main__":
    main()

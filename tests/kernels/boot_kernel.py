#!/usr/bin/env python3
"""Runs one command inside a kernel booted under qemu (TCG), for the kernel matrix.

    boot_kernel.py KERNEL TIMEOUT_S FILE... -- COMMAND...

KERNEL is `host` (/boot/vmlinuz-$(uname -r)) or a Debian 12 flavour (`amd64`,
`cloud-amd64`, `rt-amd64`): the newest linux-image-6.1.0-NN-FLAVOUR-unsigned that apt
offers, fetched with `apt-get download` once and cached under CACHE (by package and
version). The guest's root is an initramfs holding busybox, guest_init.sh as /init, the
given FILEs at their own absolute paths (so paths compiled into the binaries hold) and
every shared library they load. /init runs COMMAND as root with CI=true and prints its
exit status on the serial console as `TCPSTATESD-RESULT <code>`; this script exits with
that code. No marker before TIMEOUT_S (a hang, a panic, a guest that never booted) is a
failure that shows the console's tail. Exit 77 (ctest: skipped) only when the host's
kernel image is not in /boot, or outside CI (CI=true) when not root.
"""
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

CACHE = "/var/cache/tcpstatesd-test/kernels"
HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = re.compile(r"TCPSTATESD-RESULT (\d+)")
SKIP = 77


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def skip(message):
    print(f"SKIPPED: {message}", flush=True)
    sys.exit(SKIP)


def run(argv, **kwargs):
    # Bounded, so that a stalled mirror fails here with the command, not as a bare ctest timeout.
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=240, **kwargs)
    except subprocess.TimeoutExpired:
        fail(f"{' '.join(argv)} did not finish within 240 s")
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def newest_debian_kernel(flavour):
    """(package, version) of the newest 6.1 ABI of this flavour in apt's package lists."""
    pattern = rf"^linux-image-6\.1\.0-([0-9]+)-{re.escape(flavour)}-unsigned$"
    names = run(["apt-cache", "pkgnames", "linux-image-6.1.0-"]).split()
    packages = [name for name in names if re.match(pattern, name)]
    if not packages:
        fail(f"apt offers no package matching {pattern}: run apt-get update")
    package = max(packages, key=lambda name: int(re.match(pattern, name).group(1)))
    show = run(["apt-cache", "show", "--no-all-versions", package])
    return package, re.search(r"^Version: (\S+)$", show, re.M).group(1)


def debian_vmlinuz(flavour):
    package, version = newest_debian_kernel(flavour)
    entry = os.path.join(CACHE, f"{package}_{version}")
    vmlinuz = os.path.join(entry, "vmlinuz")
    print(f"kernel: {package} {version}", flush=True)
    os.makedirs(CACHE, exist_ok=True)
    # Tests of the same kernel may run in parallel (ctest -j): one of them fetches it.
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(vmlinuz):
            return vmlinuz
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE) as work:
            # Sandboxing as _apt would need a directory _apt can write; this one is root's.
            run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                 f"{package}={version}"], cwd=work)
            (deb,) = [name for name in os.listdir(work) if name.endswith(".deb")]
            # Only the image: every driver the guest uses (8250 serial console, initramfs,
            # loopback, ACPI power-off) is built into all three flavours, so no modules.
            tree = os.path.join(work, "tree")
            os.mkdir(tree)
            run(["bash", "-o", "pipefail", "-c",
                 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "./boot/*"',
                 "bash", os.path.join(work, deb), tree])
            boot = os.path.join(tree, "boot")
            staged = os.path.join(work, "entry")
            os.mkdir(staged)
            for name in os.listdir(boot):
                if name.startswith(("vmlinuz-", "config-")):
                    shutil.move(os.path.join(boot, name), os.path.join(staged, name.split("-")[0]))
            if not os.path.exists(os.path.join(staged, "vmlinuz")):
                fail(f"{deb} has no /boot/vmlinuz-*")
            os.rename(staged, entry)
        print(f"fetched {package} {version} into {entry} in {time.monotonic() - started:.1f} s",
              flush=True)
    return vmlinuz


def host_vmlinuz():
    release = os.uname().release
    vmlinuz = f"/boot/vmlinuz-{release}"
    print(f"kernel: the host's own, {release}", flush=True)
    if not os.path.exists(vmlinuz):
        skip(f"{vmlinuz} does not exist (the running kernel was not installed into /boot, as "
             f"in a VM its host boots), so it cannot be booted under qemu; not needed: every "
             f"other test runs on this kernel")
    return vmlinuz


def shared_libraries(path):
    """The files the dynamic loader maps for `path`, as ldd resolves them."""
    result = subprocess.run(["ldd", path], capture_output=True, text=True)
    if result.returncode != 0:
        return []  # a static binary (busybox)
    libraries = []
    for line in result.stdout.splitlines():
        match = re.search(r"(?:=> )?(/\S+) \(0x", line)
        if match:
            libraries.append(match.group(1))
    return libraries


class Cpio:
    """Writes an uncompressed newc archive, the format the kernel unpacks as initramfs."""

    def __init__(self, out):
        self.out = out
        self.inode = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        fields = [self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self.inode += 1
        header = b"070701" + b"".join(b"%08x" % field for field in fields)
        self.out.write(header + name.encode() + b"\0")
        self.out.write(b"\0" * (-(len(header) + len(name) + 1) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def directory(self, name):
        self._entry(name, 0o040755)

    def file(self, name, source):
        with open(source, "rb") as f:
            self._entry(name, 0o100755, f.read())

    def char_device(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def close(self):
        self._entry("TRAILER!!!", 0)


def build_initramfs(path, files):
    busybox = shutil.which("busybox")
    if not busybox or shared_libraries(busybox):
        fail("needs the static busybox (Debian package busybox-static)")
    wanted = {}  # guest path -> host file
    for f in files:
        wanted[f] = f
        for library in shared_libraries(f):
            wanted[library] = os.path.realpath(library)
    directories = {"dev", "proc", "sys", "tmp", "bin"}
    for guest_path in wanted:
        parent = os.path.dirname(guest_path).lstrip("/")
        while parent:
            directories.add(parent)
            parent = os.path.dirname(parent)
    with open(path, "wb") as out:
        cpio = Cpio(out)
        for directory in sorted(directories):  # parents sort before their children
            cpio.directory(directory)
        # The kernel opens /dev/console for /init before anything can mount devtmpfs.
        cpio.char_device("dev/console", 5, 1)
        cpio.file("bin/busybox", busybox)
        cpio.file("init", os.path.join(HERE, "guest_init.sh"))
        for guest_path, source in sorted(wanted.items()):
            cpio.file(guest_path.lstrip("/"), source)
        cpio.close()


def boot(vmlinuz, initramfs, command, timeout):
    if any(re.search(r"\s", word) for word in command):
        fail(f"the kernel command line splits arguments at spaces: {command}")
    # TCG: nested KVM exists on these machines but is slower. Two CPUs, so that per-CPU perf
    # buffers and events of one socket on different CPUs happen as on real machines (and the
    # integration tests ran a little faster than on one: 13.9 s against 15.0 s).
    # At nice 19, as the busy loops every test is checked against (DEVELOPERS.md): the guests
    # run beside the other tests (most wait on sockets and timers) and take only the idle CPU.
    argv = ["nice", "-n", "19", "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
            "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", vmlinuz, "-initrd", initramfs,
            # panic=-1 + -no-reboot: a panic ends qemu at once instead of waiting for the
            # timeout. Everything after "--" is the argument list of /init.
            "-append", "console=ttyS0 quiet panic=-1 rdinit=/init -- " + " ".join(command)]
    print(" ".join(argv[:-1]) + f" '{argv[-1]}'", flush=True)
    lines = []
    started = time.monotonic()
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def echo_console():
        for raw in qemu.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            print(line, flush=True)

    reader = threading.Thread(target=echo_console)
    reader.start()
    try:
        qemu.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        qemu.kill()
        qemu.wait()
        reader.join()
        tail = "\n".join(lines[-40:])
        fail(f"no result after {timeout} s: qemu killed. The console's last lines:\n{tail}")
    reader.join()
    elapsed = time.monotonic() - started
    results = [int(m.group(1)) for m in map(MARKER.search, lines) if m]
    if not results:
        tail = "\n".join(lines[-40:])
        fail(f"qemu exited {qemu.returncode} after {elapsed:.1f} s without a "
             f"TCPSTATESD-RESULT line. The console's last lines:\n{tail}")
    print(f"guest command exited {results[-1]}; qemu ran {elapsed:.1f} s", flush=True)
    return results[-1]


def main():
    if "--" not in sys.argv:
        fail(__doc__)
    split = sys.argv.index("--")
    kernel, timeout, *files = sys.argv[1:split]
    command = sys.argv[split + 1:]
    if os.geteuid() != 0:
        # The kernel cache is root's (/var/cache), as the other BPF tests need root.
        if os.environ.get("CI") == "true":
            fail("needs root")
        skip("needs root")
    vmlinuz = host_vmlinuz() if kernel == "host" else debian_vmlinuz(kernel)
    with tempfile.TemporaryDirectory() as work:
        initramfs = os.path.join(work, "initramfs.cpio")
        build_initramfs(initramfs, files)
        code = boot(vmlinuz, initramfs, command, float(timeout))
    sys.exit(code)


if __name__ == "__main__":
    main()

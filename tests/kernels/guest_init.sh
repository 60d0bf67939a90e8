#!/bin/busybox sh
# PID 1 of the test guest (see boot_kernel.py): the environment the tests have on the host
# (proc, sysfs with the guest kernel's own /sys/kernel/btf, a writable /tmp, loopback up, root,
# CI=true so that BPF tests fail instead of skipping), then the command given after "--" on
# the kernel command line, its exit status as a marker line on the console, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin HOME=/tmp TMPDIR=/tmp CI=true
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# /tmp is the initramfs's own (rootfs is writable): a tmpfs mounted over it would hide the
# binaries of a build tree under /tmp, which the initramfs holds at their host paths.
ip link set lo up
echo "guest: $(uname -r), $(nproc) CPUs; running: $*"
"$@"
code=$?
# /dev/kmsg goes through printk, which writes to the console synchronously: the marker is
# out before power-off, whereas what is still buffered in the tty could be cut off.
echo "<2>TCPSTATESD-RESULT $code" > /dev/kmsg
poweroff -f

// What the running kernel reports differently from others, for the tests that check exact
// events on every kernel of the matrix (tests/kernels/).
#pragma once

namespace itest {

// True when the kernel's version (uname -r) is at least major.minor.
bool kernel_at_least(int major, int minor);

// Whether a passively opened socket's first transition (LISTEN -> SYN_RECV) carries its peer's
// address and port. Linux 6.15 (a3a128f611a9, "inet: consolidate inet_csk_clone_lock()")
// copies them into the new socket before that transition; older kernels, Debian 12's 6.1
// among them, make it first, so it shows the listener's endpoints (remote unspecified, port 0).
bool child_has_peer_on_syn_recv();

}  // namespace itest

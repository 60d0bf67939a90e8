// What the running kernel reports differently from others, for the tests that check exact
// events on every kernel of the matrix (tests/kernels/).
#pragma once

namespace tcpstatesd::test {

// True when the kernel's version (uname -r) is at least major.minor.
bool kernel_at_least(int major, int minor);

// Whether a passively opened socket's first transition (LISTEN -> SYN_RECV) carries its peer's
// address and port. Linux 6.15 (a3a128f611a9, "inet: consolidate inet_csk_clone_lock()")
// copies them into the new socket before that transition; older kernels, Debian 12's 6.1
// among them, make it first, so it shows the listener's endpoints (remote unspecified, port 0).
bool child_has_peer_on_syn_recv();

// Whether tcp:tcp_send_reset fires for a RST sent in answer to a segment that found no socket
// (and for timewait and request sockets). Linux 6.10 (19822a980e19, "trace: tcp: fully support
// trace_tcp_send_reset") calls it for them; older kernels, 6.1 among them, for full sockets
// only.
bool traces_socketless_resets();

// Whether tcp:tcp_send_reset passes the reset's reason (enum sk_rst_reason), as it does since
// Linux 6.10; older kernels, 6.1 among them, give none: every reason is not_specified.
bool resets_have_reasons();

}  // namespace tcpstatesd::test

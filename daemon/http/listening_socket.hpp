// The listening sockets of the HTTP server, created here rather than by libmicrohttpd so that
// a failure names the listen address, the call and errno with a hint.
#pragma once

#include <cstdint>

#include "common/fd.hpp"
#include "config/listen_address.hpp"

namespace tcpstatesd {

// A bound, listening, non-blocking socket. ":port" is one IPv6 socket that also accepts IPv4
// (IPV6_V6ONLY off), or 0.0.0.0 when the kernel has no IPv6; "[v6]:port" accepts IPv6 only,
// an IPv4 address IPv4 only. Throws HttpError.
Fd listen_on(const ListenAddress& address);

// The port a socket is bound to (what ":0" resolved to).
uint16_t local_port(const Fd& socket);

}  // namespace tcpstatesd

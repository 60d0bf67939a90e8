// The listening sockets of the HTTP server, created here rather than by libmicrohttpd so that
// a failure names the listen address, the call and errno with a hint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "config/listen_address.hpp"

namespace tcpstatesd {

// A listening socket the HTTP server serves on, and the name messages give it.
struct Listener {
    Fd socket;
    std::string name;  // the listen address as written, or "systemd socket 127.0.0.1:9977"
};

// A bound, listening, non-blocking socket. ":port" is one IPv6 socket that also accepts IPv4
// (IPV6_V6ONLY off), or 0.0.0.0 when the kernel has no IPv6; "[v6]:port" accepts IPv6 only,
// an IPv4 address IPv4 only. Throws HttpError.
Fd listen_on(const ListenAddress& address);

// listen_on for each address, named by it.
std::vector<Listener> listen_on_each(const std::vector<ListenAddress>& addresses);

// Socket activation (--web.systemd-socket): the listening TCP sockets systemd passed
// (sd_listen_fds), made non-blocking. Throws HttpError when none was passed or one is not a
// listening stream socket.
std::vector<Listener> systemd_listeners();

// The port a socket is bound to (what ":0" resolved to).
uint16_t local_port(const Fd& socket);

}  // namespace tcpstatesd

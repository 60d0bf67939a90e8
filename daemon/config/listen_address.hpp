// A listen address of the HTTP endpoint (web.listen_addresses, --web.listen-address), parsed
// once here into the socket address the HTTP server binds.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

namespace tcpstatesd {

struct ListenAddress {
    std::string text;  // as written: messages quote it, equality and duplicates compare it
    // ":port": one IPv6 socket that also accepts IPv4 (the server falls back to IPv4 on a host
    // without IPv6). Otherwise exactly the address given.
    bool every_address = false;
    sockaddr_storage socket_address{};  // AF_INET or AF_INET6, port included; [::] for ":port"
    socklen_t socket_address_length = 0;

    bool operator==(const ListenAddress& other) const { return text == other.text; }
};

// Port 0 asks the kernel for any free port: useless to Prometheus, so configurations refuse
// it, but tests that run servers side by side need it. They parse with PortZero::Allowed
// rather than build socket addresses by hand, so the server under test gets what the daemon
// gives it.
enum class PortZero { Refused, Allowed };

// ":port", "IPv4:port" or "[IPv6]:port"; hosts are IP literals, never resolved. Throws
// std::invalid_argument saying what is expected.
ListenAddress parse_listen_address(std::string_view text, PortZero port_zero = PortZero::Refused);

}  // namespace tcpstatesd

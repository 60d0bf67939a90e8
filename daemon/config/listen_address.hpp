// A listen address of the HTTP endpoint (web.listen_addresses, --web.listen-address), parsed
// once here into the socket address the HTTP server binds.
#pragma once

#include <sys/socket.h>

#include <cstddef>

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

// Each listen address is a server of its own with web.max_threads threads and up to
// kHttpConnectionLimit connections: a bound on how many keeps that bounded too.
inline constexpr size_t kMaxListenAddresses = 16;

// Port 0 asks the kernel for any free port: useless to Prometheus, so configurations refuse
// it, but tests that run servers side by side need it. They parse with PortZero::Allowed
// rather than build socket addresses by hand, so the server under test gets what the daemon
// gives it.
enum class PortZero { Refused, Allowed };

// ":port", "IPv4:port" or "[IPv6]:port"; hosts are IP literals, never resolved. Throws
// std::invalid_argument saying what is expected.
ListenAddress parse_listen_address(std::string_view text, PortZero port_zero = PortZero::Refused);

// True when the kernel cannot let both listen at once: the same port, and one address covers
// the other (":port" covers every address of both families, "0.0.0.0" every IPv4 address,
// "[::]" every IPv6 address; else the same address), however they are spelled. Port 0 (tests)
// overlaps nothing.
bool listen_addresses_overlap(const ListenAddress& a, const ListenAddress& b);

}  // namespace tcpstatesd

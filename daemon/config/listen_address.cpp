#include "config/listen_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "config/yaml_reader.hpp"

namespace tcpstatesd {

namespace {

using yaml_reader::parse_whole;
using yaml_reader::quoted;

// Fills the socket address for a host literal (empty and not bracketed: every address); false
// when the host is not an address of the family its spelling asks for.
bool set_socket_address(ListenAddress& address, const std::string& host, bool bracketed,
                        uint16_t port) {
    if (host.empty() || bracketed) {
        auto& v6 = reinterpret_cast<sockaddr_in6&>(address.socket_address);
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        address.socket_address_length = sizeof v6;
        return !bracketed || inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1;
    }
    auto& v4 = reinterpret_cast<sockaddr_in&>(address.socket_address);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    address.socket_address_length = sizeof v4;
    return inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1;
}

// The port, and the address bytes (empty for a wildcard), of a parsed listen address.
struct Endpoint {
    int family;
    uint16_t port;
    std::string_view address;
};

Endpoint endpoint_of(const ListenAddress& a) {
    if (a.socket_address.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a.socket_address);
        const bool any = IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr);
        return {AF_INET6, ntohs(v6.sin6_port),
                any ? std::string_view{}
                    : std::string_view(reinterpret_cast<const char*>(&v6.sin6_addr),
                                       sizeof v6.sin6_addr)};
    }
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a.socket_address);
    const bool any = v4.sin_addr.s_addr == htonl(INADDR_ANY);
    return {
        AF_INET, ntohs(v4.sin_port),
        any ? std::string_view{}
            : std::string_view(reinterpret_cast<const char*>(&v4.sin_addr), sizeof v4.sin_addr)};
}

}  // namespace

bool listen_addresses_overlap(const ListenAddress& a, const ListenAddress& b) {
    const Endpoint x = endpoint_of(a), y = endpoint_of(b);
    if (x.port != y.port || x.port == 0) return false;  // port 0: each gets a free port
    // ":port" is one IPv6 socket that accepts IPv4 too (listening_socket.cpp).
    if (a.every_address || b.every_address) return true;
    return x.family == y.family &&
           (x.address.empty() || y.address.empty() || x.address == y.address);
}

ListenAddress parse_listen_address(std::string_view text, PortZero port_zero) {
    const uint64_t lowest_port = port_zero == PortZero::Allowed ? 0 : 1;
    const std::string what =
        "\":port\" (every address), \"IPv4:port\" or \"[IPv6]:port\" with a port from " +
        std::to_string(lowest_port) + " to 65535, got " + quoted(text);
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) throw std::invalid_argument("expected " + what);
    std::string_view host = text.substr(0, colon);
    const auto port = parse_whole(text.substr(colon + 1));
    if (!port || *port < lowest_port || *port > 65535)
        throw std::invalid_argument("expected " + what);

    const bool bracketed = !host.empty() && host.front() == '[';
    if (bracketed) {
        if (host.size() < 2 || host.back() != ']') throw std::invalid_argument("expected " + what);
        host = host.substr(1, host.size() - 2);
    }
    ListenAddress address;
    address.text = std::string(text);
    address.every_address = host.empty() && !bracketed;
    if (!set_socket_address(address, std::string(host), bracketed, static_cast<uint16_t>(*port)))
        throw std::invalid_argument(
            "expected " + what +
            (bracketed ? " (not an IPv6 address)"
                       // The server binds literal addresses; a name would need resolving.
                       : " (host names are not resolved; IPv6 goes in brackets)"));
    return address;
}

}  // namespace tcpstatesd

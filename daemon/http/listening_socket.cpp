#include "http/listening_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "http/http_error.hpp"

namespace tcpstatesd {

namespace {

constexpr int kListenBacklog = 128;
constexpr int kSocketType = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

[[noreturn]] void throw_socket_error(const ListenAddress& address, const char* call, int error) {
    std::string hint;
    switch (error) {
        case EADDRINUSE:
            hint = " (another socket listens on that address and port)";
            break;
        case EACCES:
            hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)";
            break;
        case EADDRNOTAVAIL:
            hint = " (no local interface has that address)";
            break;
        default:
            break;
    }
    throw HttpError("cannot listen on \"" + address.text + "\": " + call + ": " +
                    std::strerror(error) + hint);
}

// ":port" on a kernel without IPv6: the same port on every IPv4 address.
ListenAddress every_ipv4_address(const ListenAddress& address) {
    spdlog::warn("no IPv6 on this host: \"{}\" listens on IPv4 only", address.text);
    ListenAddress v4_only = address;
    v4_only.socket_address = {};
    auto& v4 = reinterpret_cast<sockaddr_in&>(v4_only.socket_address);
    v4.sin_family = AF_INET;
    v4.sin_port = reinterpret_cast<const sockaddr_in6&>(address.socket_address).sin6_port;
    v4_only.socket_address_length = sizeof v4;  // address 0.0.0.0
    return v4_only;
}

// "systemd socket 127.0.0.1:9977": what a passed socket is bound to, for messages.
std::string systemd_socket_name(const Fd& socket) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char host[INET6_ADDRSTRLEN] = "?";
    getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length);
    const bool v6 = address.ss_family == AF_INET6;
    const void* ip =
        v6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(address).sin6_addr)
           : &reinterpret_cast<const sockaddr_in&>(address).sin_addr;
    inet_ntop(address.ss_family, ip, host, sizeof host);
    return std::string("systemd socket ") + (v6 ? "[" : "") + host + (v6 ? "]:" : ":") +
           std::to_string(local_port(socket));
}

}  // namespace

std::vector<Listener> systemd_listeners() {
    // 1: unset LISTEN_FDS and LISTEN_PID, so that no child could take the sockets for its own.
    const int count = sd_listen_fds(1);
    if (count < 0)
        throw HttpError(std::string("--web.systemd-socket: reading the sockets systemd passed: ") +
                        std::strerror(-count));
    if (count == 0)
        throw HttpError(
            "--web.systemd-socket: systemd passed no socket (LISTEN_FDS is not set for this "
            "process): start tcpstatesd through tcpstatesd.socket, or drop the flag to listen "
            "on web.listen_addresses");
    std::vector<Listener> listeners;
    listeners.reserve(count);
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + count; ++fd) {
        Fd socket(fd);  // owned from here on, whatever happens to the others
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
            throw HttpError("--web.systemd-socket: fd " + std::to_string(fd) +
                            " from systemd is not a listening stream socket: give the socket "
                            "unit ListenStream= lines only");
        // MHD's threads share the socket: an accept() that loses the race must not block.
        const int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
            throw HttpError("--web.systemd-socket: making fd " + std::to_string(fd) +
                            " non-blocking: " + std::strerror(errno));
        std::string name = systemd_socket_name(socket);
        listeners.push_back({std::move(socket), std::move(name)});
    }
    return listeners;
}

Fd listen_on(const ListenAddress& address) {
    ListenAddress endpoint = address;
    Fd fd(socket(endpoint.socket_address.ss_family, kSocketType, 0));
    if (!fd && errno == EAFNOSUPPORT && endpoint.every_address) {
        endpoint = every_ipv4_address(address);
        fd.reset(socket(AF_INET, kSocketType, 0));
    }
    if (!fd) throw_socket_error(address, "socket", errno);
    const int on = 1;
    // A restarted daemon can bind again while connections of its predecessor linger in
    // TIME_WAIT; a port with a live listener still fails with EADDRINUSE.
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        throw_socket_error(address, "setsockopt(SO_REUSEADDR)", errno);
    if (endpoint.socket_address.ss_family == AF_INET6) {
        // Set explicitly, whatever the sysctl net.ipv6.bindv6only says.
        const int v6only = endpoint.every_address ? 0 : 1;
        if (setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0)
            throw_socket_error(address, "setsockopt(IPV6_V6ONLY)", errno);
    }
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint.socket_address),
             endpoint.socket_address_length) != 0)
        throw_socket_error(address, "bind", errno);
    if (listen(fd.get(), kListenBacklog) != 0) throw_socket_error(address, "listen", errno);
    return fd;
}

std::vector<Listener> listen_on_each(const std::vector<ListenAddress>& addresses) {
    std::vector<Listener> listeners;
    listeners.reserve(addresses.size());
    for (const auto& address : addresses) listeners.push_back({listen_on(address), address.text});
    return listeners;
}

uint16_t local_port(const Fd& socket) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
        throw std::system_error(errno, std::generic_category(), "getsockname");
    return ntohs(address.ss_family == AF_INET6
                     ? reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port
                     : reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

}  // namespace tcpstatesd

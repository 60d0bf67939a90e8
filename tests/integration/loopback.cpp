#include "loopback.hpp"

#include "loopback_address.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace tcpstatesd::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

using Address = LoopbackAddress;

}  // namespace

Fd tcp_socket(int family) {
    Fd s(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) fail(std::string("socket(") + family_label(family) + ")");
    const timeval timeout{10, 0};
    if (setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0)
        fail("setting socket timeouts");
    return s;
}

const char* family_label(int family) {
    return family == AF_INET ? "IPv4" : "IPv6";
}

std::array<uint8_t, 16> loopback_address(int family) {
    std::array<uint8_t, 16> bytes{};
    if (family == AF_INET) {
        const in_addr_t a = htonl(INADDR_LOOPBACK);
        std::memcpy(bytes.data(), &a, sizeof a);
    } else {
        std::memcpy(bytes.data(), &in6addr_loopback, sizeof in6addr_loopback);
    }
    return bytes;
}

bool is_loopback(int family, const uint8_t (&address)[16]) {
    const auto expected = loopback_address(family);
    return std::memcmp(address, expected.data(), expected.size()) == 0;
}

bool is_unspecified(const uint8_t (&address)[16]) {
    for (uint8_t b : address)
        if (b != 0) return false;
    return true;
}

namespace {

// The lowest port the kernel hands out to connect() (net.ipv4.ip_local_port_range).
uint16_t first_ephemeral_port() {
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned low = 32768;
    range >> low;
    return static_cast<uint16_t>(low);
}

// The tests' port reservations, shared with the end-to-end tests (PORT_LOCKS and LOWEST_PORT in
// tests/e2e/e2e_support.py): a lock file per port, held until the process exits, so that no
// other test, in any network namespace, uses the port meanwhile.
constexpr const char* kPortLocks = "/tmp/tcpstatesd-test-ports";
constexpr uint16_t kLowest = 11000;

// The lock of `port`'s file, or no fd when another process holds it.
Fd lock_port(uint16_t port) {
    if (mkdir(kPortLocks, 0755) != 0 && errno != EEXIST)
        fail(std::string("creating ") + kPortLocks);
    const std::string path = std::string(kPortLocks) + "/" + std::to_string(port);
    Fd lock(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!lock) fail("opening " + path);
    if (flock(lock.get(), LOCK_EX | LOCK_NB) == 0) return lock;
    if (errno != EWOULDBLOCK) fail("locking " + path);
    return Fd();
}

}  // namespace

Fd bind_loopback(int family) {
    // Below the ephemeral range: no client in any network namespace is given this port by
    // connect(), so events on it come from the test (the program sees every namespace).
    static const uint16_t ephemeral = first_ephemeral_port();
    if (ephemeral <= kLowest + 1000)
        throw std::runtime_error("ip_local_port_range starts at " + std::to_string(ephemeral) +
                                 ": no room below it for the tests' ports");
    static std::minstd_rand random{std::random_device{}()};
    static std::vector<Fd> reserved;  // held until the process exits
    const unsigned span = ephemeral - kLowest;
    const unsigned start = random() % span;
    for (unsigned attempt = 0; attempt < span; ++attempt) {
        const auto port = static_cast<uint16_t>(kLowest + (start + attempt) % span);
        Fd lock = lock_port(port);
        if (!lock) continue;  // another test's
        Fd s = tcp_socket(family);
        Address a(family, port);
        if (bind(s.get(), a.get(), a.length) == 0) {
            reserved.push_back(std::move(lock));
            return s;
        }
        if (errno != EADDRINUSE)
            fail(std::string("binding to ") + family_label(family) + " loopback port " +
                 std::to_string(port));
    }
    errno = EADDRINUSE;
    fail(std::string("binding to a free ") + family_label(family) + " loopback port below " +
         std::to_string(ephemeral));
}

void start_listening(const Fd& socket) {
    if (listen(socket.get(), SOMAXCONN) != 0) fail("listen");
}

Fd listen_on_loopback(int family) {
    Fd s = bind_loopback(family);
    start_listening(s);
    return s;
}

Fd listen_on_port(int family, uint16_t port, int backlog) {
    Fd s = tcp_socket(family);
    const Address a(family, port);
    if (bind(s.get(), a.get(), a.length) != 0)
        fail(std::string("binding to ") + family_label(family) + " loopback port " +
             std::to_string(port));
    if (listen(s.get(), backlog) != 0) fail("listen");
    return s;
}

uint16_t local_port(const Fd& socket) {
    Address a(AF_INET, 0);
    a.length = sizeof a.storage;
    if (getsockname(socket.get(), a.get(), &a.length) != 0) fail("getsockname");
    return a.storage.ss_family == AF_INET
               ? ntohs(reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port)
               : ntohs(reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port);
}

int try_connect(const Fd& socket, int family, uint16_t port) {
    Address a(family, port);
    return connect(socket.get(), a.get(), a.length) == 0 ? 0 : errno;
}

Fd connect_loopback(int family, uint16_t port) {
    Fd s = tcp_socket(family);
    if (int err = try_connect(s, family, port)) {
        errno = err;
        fail(std::string("connecting to ") + family_label(family) + " loopback port " +
             std::to_string(port));
    }
    return s;
}

Fd accept_one(const Fd& listener) {
    Fd s(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (s.get() < 0) fail("accept");
    return s;
}

void send_all(const Fd& socket, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = send(socket.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("send");
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
}

std::string recv_exact(const Fd& socket, size_t size) {
    std::string data(size, '\0');
    size_t have = 0;
    while (have < size) {
        const ssize_t n = recv(socket.get(), data.data() + have, size - have, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("recv");
        if (n == 0) {
            errno = ECONNRESET;
            fail("recv: connection closed after " + std::to_string(have) + " of " +
                 std::to_string(size) + " bytes");
        }
        have += static_cast<size_t>(n);
    }
    return data;
}

void expect_eof(const Fd& socket) {
    char byte;
    for (;;) {
        const ssize_t n = recv(socket.get(), &byte, 1, 0);
        if (n == 0) return;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("waiting for the peer's FIN");
        errno = EPROTO;
        fail("waiting for the peer's FIN: unexpected data");
    }
}

uint16_t run_connection(int family, const Fd& listener) {
    return run_connection(family, listener, tcp_socket(family));
}

uint16_t run_connection(int family, const Fd& listener, Fd client) {
    if (int err = try_connect(client, family, local_port(listener))) {
        errno = err;
        fail("connecting to the listener");
    }
    const uint16_t client_port = local_port(client);
    Fd server = accept_one(listener);
    send_all(client, "ping");
    if (recv_exact(server, 4) != "ping") throw std::runtime_error("request corrupted");
    send_all(server, "pong");
    if (recv_exact(client, 4) != "pong") throw std::runtime_error("reply corrupted");
    client.reset();
    expect_eof(server);
    server.reset();
    return client_port;
}

}  // namespace tcpstatesd::test

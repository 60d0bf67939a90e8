// Real TCP sockets on the loopback interface (127.0.0.1 and ::1), made by the test itself,
// with RAII fds. Every socket gets send/receive timeouts, so a test that goes wrong fails
// instead of hanging. Failures throw std::system_error naming the call.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/fd.hpp"

namespace tcpstatesd::test {

using tcpstatesd::Fd;

// "IPv4" or "IPv6", for test messages.
const char* family_label(int family);

// The loopback address as an event carries it (IPv4 in the first 4 bytes, rest zero).
std::array<uint8_t, 16> loopback_address(int family);
bool is_loopback(int family, const uint8_t (&address)[16]);
bool is_unspecified(const uint8_t (&address)[16]);

// A TCP socket with send/receive timeouts, not bound.
Fd tcp_socket(int family);

// A TCP socket bound to the loopback address on a free port below the kernel's ephemeral
// range (so that no other process's client socket, in any network namespace, has it) that no
// other test holds (a reservation kept until the process exits, loopback.cpp), not
// listening: its port is known before any state change (and connecting to it is refused).
Fd bind_loopback(int family);
void start_listening(const Fd& socket);
// bind_loopback + start_listening.
Fd listen_on_loopback(int family);
// A listener on the loopback address's `port`, unreserved: for a port of a network namespace
// of the test's own (own_network_namespace.hpp), or one bind_loopback() reserved elsewhere.
Fd listen_on_port(int family, uint16_t port, int backlog = SOMAXCONN);

uint16_t local_port(const Fd& socket);

// A blocking connect of `socket` to the loopback address; returns errno, 0 on success.
int try_connect(const Fd& socket, int family, uint16_t port);
// A blocking connect from a new socket; throws on failure.
Fd connect_loopback(int family, uint16_t port);
Fd accept_one(const Fd& listener);

void send_all(const Fd& socket, std::string_view data);
std::string recv_exact(const Fd& socket, size_t size);
// Blocks until the peer's FIN arrives (recv returns 0); throws on data or timeout.
void expect_eof(const Fd& socket);

// One whole connection to `listener`, in the order whose transitions the tests expect:
// connect, accept, a request and a reply, the client closes, the server sees EOF and
// closes. Returns the client's local port. `client` may be bound already (its local port
// then known before it connects).
uint16_t run_connection(int family, const Fd& listener, Fd client);
uint16_t run_connection(int family, const Fd& listener);

}  // namespace tcpstatesd::test

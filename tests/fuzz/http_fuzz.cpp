// libFuzzer target for the HTTP request path: each input is sent, as raw bytes, over a
// loopback connection to a real HttpServer (libmicrohttpd parsing, then our routing, basic
// auth, scrape, gzip) with a small registry behind it. The first byte picks the server: odd
// with basic auth (user "u", password "p", bcrypt cost 4), even without.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "http/http_server.hpp"

namespace {

struct Servers {
    std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
    std::unique_ptr<tcpstatesd::HttpServer> open;
    std::unique_ptr<tcpstatesd::HttpServer> authenticated;
};

Servers* running = nullptr;

Servers& servers() {
    static Servers* s = [] {
        spdlog::set_level(spdlog::level::off);
        auto* created = new Servers;
        prometheus::BuildCounter()
            .Name("fuzz_total")
            .Help("A series so that a scrape has content.")
            .Register(*created->registry)
            .Add({{"label", "value"}})
            .Increment();
        tcpstatesd::HttpServerOptions options;
        options.listen_addresses = {
            tcpstatesd::parse_listen_address("127.0.0.1:0", tcpstatesd::PortZero::Allowed)};
        options.telemetry_path = "/metrics";
        options.max_threads = 1;
        auto yes = [] { return true; };
        created->open =
            std::make_unique<tcpstatesd::HttpServer>(options, created->registry, yes, yes);
        options.security.basic_auth_users = {
            {"u", "$2y$04$hRz6DmgaX1jsF1RfEBWzPerVc4c27f/pMjnuVp0G.9BwMc7zUkq7e"}};
        created->authenticated =
            std::make_unique<tcpstatesd::HttpServer>(options, created->registry, yes, yes);
        // libFuzzer ends with exit(): the servers' threads must stop before the static
        // objects they use (spdlog's registry among them) are destroyed.
        running = created;
        std::atexit([] { delete running; });
        return created;
    }();
    return *s;
}

void exchange(uint16_t port, const uint8_t* data, size_t size) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    // MHD does not notice the client's end of input in every state (a body still expected,
    // a kept-alive connection) and waits for its 10 s timeout; an answer on loopback takes
    // milliseconds, so 100 ms without one ends the exchange.
    timeval timeout{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
        size_t sent = 0;
        while (sent < size) {
            const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n <= 0) break;
            sent += static_cast<size_t>(n);
        }
        shutdown(fd, SHUT_WR);  // end of input: the server answers or closes
        // Once answers flow, a short pause ends the exchange.
        char buffer[65536];
        while (recv(fd, buffer, sizeof buffer, 0) > 0) {
            timeval pause{0, 2000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &pause, sizeof pause);
        }
    }
    // A reset rather than a FIN: the server frees the connection at once instead of holding
    // it, half-closed, until its timeout (and the per-address limit of 16 with it).
    linger reset{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    Servers& s = servers();
    const auto& server = (data[0] & 1) ? s.authenticated : s.open;
    exchange(server->bound_ports().front(), data + 1, size - 1);
    return 0;
}

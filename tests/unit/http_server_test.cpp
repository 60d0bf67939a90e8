#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "http/content_encoding.hpp"
#include "http/http_server.hpp"
#include "http_client.hpp"
#include "protobuf_reader.hpp"
#include "temp_dir.hpp"
#include "version.hpp"

using tcpstatesd::HttpServer;
using tcpstatesd::HttpServerOptions;
using tcpstatesd::test::connect_to;
using tcpstatesd::test::exchange;
using tcpstatesd::test::parse_reply;
using tcpstatesd::test::request;
using tcpstatesd::test::send_and_read;
using tcpstatesd::test::TempDir;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

constexpr const char* kExposition = "text/plain; version=0.0.4; charset=utf-8";

std::shared_ptr<prometheus::Registry> sample_registry() {
    auto registry = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter()
        .Name("test_events_total")
        .Help("Events seen by the test.")
        .Register(*registry)
        .Add({{"kind", "a"}})
        .Increment(3);
    prometheus::BuildGauge()
        .Name("test_sockets")
        .Help("Sockets open in the test.")
        .Register(*registry)
        .Add({})
        .Set(7);
    auto& histogram = prometheus::BuildHistogram()
                          .Name("test_duration_seconds")
                          .Help("Durations seen by the test.")
                          .Register(*registry)
                          .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 1});
    histogram.Observe(0.05);
    histogram.Observe(0.5);
    histogram.Observe(5);
    return registry;
}

// Port 0 (any free port) lets tests run side by side; configurations refuse it.
tcpstatesd::ListenAddress listen_address(const std::string& text) {
    return tcpstatesd::parse_listen_address(text, tcpstatesd::PortZero::Allowed);
}

HttpServerOptions loopback(const std::string& path = "/metrics") {
    HttpServerOptions options;
    options.listen_addresses = {listen_address("127.0.0.1:0")};
    options.telemetry_path = path;
    options.max_threads = 2;
    return options;
}

struct Served {
    std::atomic<bool> healthy{true};
    std::atomic<bool> ready{true};
    std::shared_ptr<prometheus::Registry> registry = sample_registry();
    HttpServer server;
    uint16_t port;

    explicit Served(const HttpServerOptions& options = loopback())
        : server(
              options, registry, [this] { return healthy.load(); },
              [this] { return ready.load(); }),
          port(server.bound_ports().at(0)) {}

    tcpstatesd::test::HttpReply get(const std::string& path, const std::string& headers = "") {
        return request("127.0.0.1", port, "GET", path, headers);
    }
};

// The scrape text without the server's own scrape metrics, which change with every scrape.
std::string without_scrape_metrics(const std::string& text) {
    std::istringstream lines(text);
    std::string out;
    for (std::string line; std::getline(lines, line);) {
        if (line.find("tcpstatesd_scrape") == std::string::npos) {
            out += line + "\n";
        }
    }
    return out;
}

// A client connection held open by a test.
struct Client {
    int fd;
    explicit Client(uint16_t port, const std::string& source = "")
        : fd(connect_to("127.0.0.1", port, source)) {}
    Client(Client&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
    Client& operator=(Client&&) = delete;
    ~Client() {
        if (fd >= 0) {
            close(fd);
        }
    }
    void send_text(const std::string& text) const {
        REQUIRE(send(fd, text.data(), text.size(), MSG_NOSIGNAL) == ssize_t(text.size()));
    }
    // True once the server has closed (or reset) the connection; waits at most `timeout`.
    bool closed_by_server(std::chrono::milliseconds timeout) const {
        pollfd watch{fd, POLLIN, 0};
        if (poll(&watch, 1, static_cast<int>(timeout.count())) != 1) {
            return false;
        }
        char byte;
        return recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK) <= 0;
    }
};

// The thread ids of this process.
std::set<std::string> tasks() {
    std::set<std::string> ids;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        ids.insert(entry.path().filename());
    }
    return ids;
}

// The SigBlk mask of one thread of this process.
uint64_t blocked_signals(const std::string& task) {
    std::ifstream status("/proc/self/task/" + task + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("SigBlk:", 0) == 0) {
            return std::stoull(line.substr(7), nullptr, 16);
        }
    }
    return 0;
}

uint64_t signal_bit(int signal) {
    return uint64_t{1} << (signal - 1);
}

}  // namespace

TEST_CASE("http: GET on the telemetry path returns the registry in the text format") {
    Served served;
    const auto reply = served.get("/metrics");
    REQUIRE(reply.status == 200);
    CHECK(reply.header("content-type") == kExposition);
    CHECK(reply.header("content-length") == std::to_string(reply.body.size()));
    CHECK(reply.header("content-encoding").empty());
    const std::string& body = reply.body;
    CHECK_THAT(body, Catch::Contains("# HELP test_events_total Events seen by the test.\n"
                                     "# TYPE test_events_total counter\n"
                                     "test_events_total{kind=\"a\"} 3\n"));
    CHECK_THAT(body, Catch::Contains("# TYPE test_sockets gauge\ntest_sockets 7\n"));
    CHECK_THAT(body, Catch::Contains("test_duration_seconds_bucket{le=\"0.1\"} 1\n"
                                     "test_duration_seconds_bucket{le=\"1\"} 2\n"
                                     "test_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    CHECK_THAT(body, Catch::Contains("test_duration_seconds_count 3\n"));
    CHECK_THAT(body, Catch::Contains("# HELP tcpstatesd_scrapes_total "));
    CHECK_THAT(body, Catch::Contains("# TYPE tcpstatesd_scrape_duration_seconds histogram\n"));
    // A query string does not change the resource.
    CHECK(served.get("/metrics?x=1").status == 200);
}

TEST_CASE("http: scrapes are counted and timed in the registry") {
    Served served;
    for (int i = 0; i < 3; ++i) {
        REQUIRE(served.get("/metrics").status == 200);
    }
    // The scrape counts itself after it has serialized, so the 4th shows the 3 before it.
    const auto body = served.get("/metrics").body;
    CHECK_THAT(body, Catch::Contains("tcpstatesd_scrapes_total 3\n"));
    CHECK_THAT(body, Catch::Contains("tcpstatesd_scrape_duration_seconds_count 3\n"));
}

TEST_CASE("http: HEAD sends the headers of GET and no body") {
    Served served;
    const auto raw = exchange("127.0.0.1", served.port,
                              "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    const auto reply = parse_reply(raw);
    REQUIRE(reply.status == 200);
    CHECK(reply.header("content-type") == kExposition);
    CHECK(std::stoul(reply.header("content-length")) > 100);
    CHECK(reply.body.empty());

    for (const char* path : {"/", "/-/healthy", "/-/ready"}) {
        const auto head = request("127.0.0.1", served.port, "HEAD", path);
        CHECK(head.status == 200);
        CHECK(head.body.empty());
        CHECK(std::stoul(head.header("content-length")) > 0);
    }
}

TEST_CASE("http: gzip when the client accepts it, identity otherwise") {
    Served served;
    const auto identity = served.get("/metrics");
    const auto compressed = served.get("/metrics", "Accept-Encoding: deflate, gzip\r\n");
    REQUIRE(compressed.status == 200);
    CHECK(compressed.header("content-encoding") == "gzip");
    CHECK(compressed.header("vary") == "Accept, Accept-Encoding");
    CHECK(compressed.header("content-type") == kExposition);
    CHECK(compressed.header("content-length") == std::to_string(compressed.body.size()));
    const std::string inflated = tcpstatesd::test::gunzip(compressed.body);
    CHECK(without_scrape_metrics(inflated) == without_scrape_metrics(identity.body));
    CHECK_THAT(inflated, Catch::Contains("test_sockets 7\n"));

    const auto refused = served.get("/metrics", "Accept-Encoding: gzip;q=0, identity\r\n");
    CHECK(refused.header("content-encoding").empty());
    CHECK_THAT(refused.body, Catch::Contains("test_sockets 7\n"));
}

TEST_CASE("http: OpenMetrics and protobuf when the Accept header asks, gzipped or not") {
    Served served;
    const std::string openmetrics = "Accept: application/openmetrics-text; version=1.0.0\r\n";
    const std::string protobuf =
        "Accept: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
        "encoding=delimited\r\n";
    const std::string gzip = "Accept-Encoding: gzip\r\n";

    const auto om = served.get("/metrics", openmetrics);
    REQUIRE(om.status == 200);
    CHECK(om.header("content-type") ==
          "application/openmetrics-text; version=1.0.0; charset=utf-8");
    CHECK(om.header("vary") == "Accept, Accept-Encoding");
    CHECK_THAT(om.body, Catch::Contains("# TYPE test_events counter\n"));
    CHECK_THAT(om.body, Catch::Contains("test_events_total{kind=\"a\"} 3\n"));
    CHECK_THAT(om.body, Catch::EndsWith("# EOF\n"));
    const auto om_gzip = served.get("/metrics", openmetrics + gzip);
    CHECK(om_gzip.header("content-encoding") == "gzip");
    CHECK(om_gzip.header("content-type") == om.header("content-type"));
    CHECK(without_scrape_metrics(tcpstatesd::test::gunzip(om_gzip.body)) ==
          without_scrape_metrics(om.body));

    const auto pb = served.get("/metrics", protobuf);
    REQUIRE(pb.status == 200);
    CHECK(pb.header("content-type") ==
          "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
          "encoding=delimited");
    const auto pb_gzip = served.get("/metrics", protobuf + gzip);
    CHECK(pb_gzip.header("content-encoding") == "gzip");
    // The same families in both, the server's own scrape metrics aside.
    auto names = [](const std::string& body) {
        std::set<std::string> found;
        for (const auto& family : tcpstatesd::test::decode_delimited(body)) {
            if (family.name().find("tcpstatesd_scrape") != std::string::npos) continue;
            found.insert(family.DebugString());
        }
        return found;
    };
    const auto plain = names(pb.body);
    CHECK(plain.size() == 3);  // test_events_total, test_sockets, test_duration_seconds
    CHECK(names(tcpstatesd::test::gunzip(pb_gzip.body)) == plain);

    // HEAD: the headers of the format asked for, no body.
    const auto head = request("127.0.0.1", served.port, "HEAD", "/metrics", protobuf);
    CHECK(head.status == 200);
    CHECK(head.header("content-type") == pb.header("content-type"));
    CHECK(head.body.empty());
    // Without a served format: the text format.
    CHECK(served.get("/metrics", "Accept: application/json\r\n").header("content-type") ==
          kExposition);
}

TEST_CASE("http: Accept-Encoding parsing") {
    using tcpstatesd::accepts_gzip;
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("GZIP"));
    CHECK(accepts_gzip("br, gzip;q=0.5"));
    CHECK(accepts_gzip("deflate , gzip ; q=1.0"));
    CHECK_FALSE(accepts_gzip(nullptr));
    CHECK_FALSE(accepts_gzip(""));
    CHECK_FALSE(accepts_gzip("deflate, br"));
    CHECK_FALSE(accepts_gzip("gzip;q=0"));
    CHECK_FALSE(accepts_gzip("gzip; q=0.000"));
    CHECK_FALSE(accepts_gzip("x-gzipped"));
}

TEST_CASE("http: unknown paths are 404, other methods 405 with Allow") {
    Served served;
    for (const char* path : {"/nope", "/metricsx", "/metrics/", "/-/", "/-/health"}) {
        INFO(path);
        const auto reply = served.get(path);
        CHECK(reply.status == 404);
        CHECK(reply.header("allow").empty());
    }
    for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
        for (const char* path : {"/metrics", "/", "/-/healthy", "/-/ready"}) {
            INFO(method << " " << path);
            const auto reply =
                request("127.0.0.1", served.port, method, path, "Content-Length: 0\r\n");
            CHECK(reply.status == 405);
            CHECK(reply.header("allow") == "GET, HEAD");
        }
    }
    // A request body is not read, and does not change the answer.
    const auto with_body = parse_reply(exchange("127.0.0.1", served.port,
                                                "POST /metrics HTTP/1.1\r\nHost: t\r\nConnection: "
                                                "close\r\nContent-Length: 5\r\n\r\nhello"));
    CHECK(with_body.status == 405);
    CHECK(with_body.header("allow") == "GET, HEAD");
}

TEST_CASE("http: /-/healthy and /-/ready follow their callbacks") {
    Served served;
    CHECK(served.get("/-/healthy").status == 200);
    CHECK(served.get("/-/healthy").body == "OK\n");
    CHECK(served.get("/-/ready").status == 200);

    served.ready = false;
    CHECK(served.get("/-/ready").status == 503);
    CHECK(served.get("/-/healthy").status == 200);

    served.healthy = false;
    CHECK(served.get("/-/healthy").status == 503);

    served.healthy = true;
    served.ready = true;
    CHECK(served.get("/-/healthy").status == 200);
    CHECK(served.get("/-/ready").status == 200);
}

TEST_CASE("http: the landing page links the configured telemetry path") {
    Served served(loopback("/custom/metrics"));
    const auto page = served.get("/");
    REQUIRE(page.status == 200);
    CHECK(page.header("content-type") == "text/html; charset=utf-8");
    CHECK_THAT(page.body, Catch::Contains("<a href=\"/custom/metrics\">"));
    CHECK_THAT(page.body, Catch::Contains(tcpstatesd::kVersion));

    CHECK(served.get("/custom/metrics").status == 200);
    CHECK(served.get("/metrics").status == 404);
}

TEST_CASE("http: label values with backslash, quote and newline are escaped") {
    auto registry = std::make_shared<prometheus::Registry>();
    prometheus::BuildGauge()
        .Name("test_labelled")
        .Help("Gauge with a hostile label value.")
        .Register(*registry)
        .Add({{"value", "a\\b\"c\nd"}})
        .Set(1);
    HttpServer server(
        loopback(), registry, [] { return true; }, [] { return true; });
    const auto reply = request("127.0.0.1", server.bound_ports().at(0), "GET", "/metrics");
    CHECK_THAT(reply.body, Catch::Contains("test_labelled{value=\"a\\\\b\\\"c\\nd\"} 1\n"));
}

TEST_CASE("http: malformed and oversized requests get 4xx or a close, and the server lives on") {
    Served served;
    const std::string huge_header =
        "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
    const std::string many_headers = [] {
        std::string request = "GET /metrics HTTP/1.1\r\nHost: t\r\n";
        for (int i = 0; i < 2000; ++i) {
            request += "X-" + std::to_string(i) + ": v\r\n";
        }
        return request + "\r\n";
    }();
    const std::string requests[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        "GET /%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        std::string(1000, '\xff') + "\r\n\r\n",
        huge_header,
        many_headers,
    };
    for (const auto& bad : requests) {
        INFO("request starts with: " << bad.substr(0, 40));
        const auto reply = parse_reply(exchange("127.0.0.1", served.port, bad));
        CHECK((reply.status == 0 || (reply.status >= 400 && reply.status < 500)));
        CHECK(served.get("/metrics").status == 200);
    }
    // RFC 9110 15.6.6: an unsupported major version is answered 505.
    CHECK(
        parse_reply(exchange("127.0.0.1", served.port, "GET /metrics HTTP/9.9\r\nHost: t\r\n\r\n"))
            .status == 505);
    // libmicrohttpd 0.9.75 takes a NUL in the request target as its end: this is "GET /",
    // the landing page, not an error. Harmless, but noted here so that a change shows.
    const auto nul = parse_reply(exchange("127.0.0.1", served.port,
                                          "GET /\0metrics HTTP/1.1\r\nConnection: close\r\n\r\n"s));
    CHECK((nul.status == 400 ||
           (nul.status == 200 && nul.body.find("<h1>tcpstatesd</h1>") != std::string::npos)));
    // A request line longer than the connection's memory is refused too.
    CHECK(parse_reply(exchange("127.0.0.1", served.port,
                               "GET /" + std::string(64 * 1024, 'a') + " HTTP/1.1\r\n\r\n"))
              .status == 414);
    // Headers beyond the connection's memory pool are refused with 431, not buffered.
    CHECK(parse_reply(exchange("127.0.0.1", served.port, huge_header)).status == 431);
}

TEST_CASE("http: keep-alive serves several requests on one connection") {
    Served served;
    // Pipelined: the second request is answered on the same connection, then it is closed.
    const std::string raw =
        exchange("127.0.0.1", served.port,
                 "GET /-/healthy HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    const auto first = parse_reply(raw);
    REQUIRE(first.status == 200);
    REQUIRE(first.body.rfind("OK\n", 0) == 0);
    const auto second = parse_reply(first.body.substr(3));
    CHECK(second.status == 200);
    CHECK(second.header("content-type") == kExposition);
    CHECK_THAT(second.body, Catch::Contains("test_sockets 7\n"));
}

TEST_CASE("http: concurrent scrapes are all served by the bounded workers") {
    Served served;  // 2 worker threads
    constexpr int kThreads = 6;
    constexpr int kScrapesEach = 15;
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < kThreads; ++t) {
        clients.emplace_back([&] {
            for (int i = 0; i < kScrapesEach; ++i) {
                const auto reply = request("127.0.0.1", served.port, "GET", "/metrics");
                if (reply.status == 200 &&
                    reply.body.find("test_duration_seconds_count 3\n") != std::string::npos) {
                    ++ok;
                }
            }
        });
    }
    for (auto& client : clients) {
        client.join();
    }
    CHECK(ok == kThreads * kScrapesEach);
    CHECK_THAT(served.get("/metrics").body,
               Catch::Contains("tcpstatesd_scrapes_total " +
                               std::to_string(kThreads * kScrapesEach) + "\n"));
}

TEST_CASE("http: \":port\" is one socket for IPv4 and IPv6") {
    auto registry = std::make_shared<prometheus::Registry>();
    HttpServerOptions options = loopback();
    options.listen_addresses = {listen_address(":0")};
    HttpServer server(
        options, registry, [] { return true; }, [] { return true; });
    REQUIRE(server.bound_ports().size() == 1);
    const uint16_t port = server.bound_ports().at(0);
    CHECK(request("127.0.0.1", port, "GET", "/-/healthy").status == 200);
    CHECK(request("::1", port, "GET", "/-/healthy").status == 200);
}

TEST_CASE("http: an IPv6 listen address is served on exactly that address") {
    auto registry = std::make_shared<prometheus::Registry>();
    HttpServerOptions options = loopback();
    options.listen_addresses = {listen_address("[::1]:0")};
    HttpServer server(
        options, registry, [] { return true; }, [] { return true; });
    const uint16_t port = server.bound_ports().at(0);
    CHECK(request("::1", port, "GET", "/-/ready").status == 200);
    CHECK_THROWS_WITH(request("127.0.0.1", port, "GET", "/-/ready"),
                      Catch::Contains("Connection refused"));
}

TEST_CASE("http: an IPv4 listen address is served on IPv4 only") {
    Served served;  // 127.0.0.1:0
    CHECK(served.get("/-/ready").status == 200);
    CHECK_THROWS_WITH(request("::1", served.port, "GET", "/-/ready"),
                      Catch::Contains("Connection refused"));
}

TEST_CASE("http: several listen addresses, each with its own port") {
    auto registry = std::make_shared<prometheus::Registry>();
    HttpServerOptions options = loopback();
    options.listen_addresses = {listen_address("127.0.0.1:0"), listen_address("127.0.0.2:0")};
    HttpServer server(
        options, registry, [] { return true; }, [] { return true; });
    const auto ports = server.bound_ports();
    REQUIRE(ports.size() == 2);
    CHECK(request("127.0.0.1", ports[0], "GET", "/-/ready").status == 200);
    CHECK(request("127.0.0.2", ports[1], "GET", "/-/ready").status == 200);
}

TEST_CASE("http: a busy port is an HttpError naming the address and the cause") {
    const int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(busy >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    REQUIRE(bind(busy, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(listen(busy, 1) == 0);
    REQUIRE(getsockname(busy, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    const std::string listen = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));

    auto registry = std::make_shared<prometheus::Registry>();
    HttpServerOptions options = loopback();
    options.listen_addresses = {listen_address(listen)};
    CHECK_THROWS_WITH(
        HttpServer(
            options, registry, [] { return true; }, [] { return true; }),
        Catch::Contains("\"" + listen + "\"") && Catch::Contains("Address already in use"));
    close(busy);
}

TEST_CASE("http: unspecified addresses bind their own family") {
    auto registry = std::make_shared<prometheus::Registry>();
    HttpServerOptions options = loopback();
    options.listen_addresses = {listen_address("0.0.0.0:0"), listen_address("[::]:0")};
    HttpServer server(
        options, registry, [] { return true; }, [] { return true; });
    const auto ports = server.bound_ports();
    REQUIRE(ports.size() == 2);
    CHECK(request("127.0.0.1", ports[0], "GET", "/-/ready").status == 200);
    CHECK(request("::1", ports[1], "GET", "/-/ready").status == 200);
    // "[::]:port" is IPv6 only (IPV6_V6ONLY), whatever net.ipv6.bindv6only says.
    CHECK_THROWS(request("127.0.0.1", ports[1], "GET", "/-/ready"));
}

TEST_CASE("http: idle and slow clients do not hold up a scrape") {
    Served served;  // 2 threads: a thread-per-connection server would be stuck for 10 s
    std::vector<Client> slow;
    for (unsigned i = 0; i < loopback().max_threads * 4; ++i) {
        slow.emplace_back(served.port);
        if (i % 2 == 1) {
            slow.back().send_text("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ");
        }
    }
    const auto start = std::chrono::steady_clock::now();
    const auto reply = served.get("/metrics");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(reply.status == 200);
    // Generous for a loaded 2-core box; the scrape takes milliseconds, a stuck one 10 s.
    CHECK(elapsed < 2s);
    for (const auto& client : slow) {
        CHECK_FALSE(client.closed_by_server(0ms));  // served alongside, not dropped
    }
}

TEST_CASE("http: one client address cannot take every connection") {
    Served served;
    // The per-address limit is 16: of 17 idle connections from 127.0.0.1, one is closed.
    std::vector<Client> idle;
    for (int i = 0; i < 17; ++i) {
        idle.emplace_back(served.port);
    }
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    int closed = 0;
    while (closed == 0 && std::chrono::steady_clock::now() < deadline) {
        for (const auto& client : idle) {
            closed += client.closed_by_server(0ms) ? 1 : 0;
        }
        std::this_thread::sleep_for(10ms);
    }
    CHECK(closed == 1);
    CHECK(served.get("/-/ready").status == 0);
    // Another address (Prometheus) is still served.
    const Client other(served.port, "127.0.0.2");
    const auto reply = parse_reply(
        send_and_read(other.fd, "GET /-/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    CHECK(reply.status == 200);
}

TEST_CASE("http: a client gone mid-response does not raise SIGPIPE") {
    // SIGPIPE keeps its default action (terminate), as in the daemon: if the server wrote to
    // a reset connection without MSG_NOSIGNAL, this test process would die.
    struct sigaction current {};
    REQUIRE(sigaction(SIGPIPE, nullptr, &current) == 0);
    REQUIRE(current.sa_handler == SIG_DFL);

    // A scrape of several MB, far more than the socket buffers take at once.
    auto registry = std::make_shared<prometheus::Registry>();
    auto& family = prometheus::BuildGauge().Name("test_big").Help("Big.").Register(*registry);
    for (int i = 0; i < 2000; ++i) {
        family.Add({{"value", std::to_string(i) + std::string(2000, 'x')}}).Set(i);
    }
    HttpServer server(
        loopback(), registry, [] { return true; }, [] { return true; });
    const uint16_t port = server.bound_ports().at(0);

    for (int round = 0; round < 10; ++round) {
        Client client(port);
        client.send_text("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        char buffer[4096];
        // Read the start of the response, then reset the connection (linger 0) while the
        // server is still writing.
        REQUIRE(recv(client.fd, buffer, sizeof buffer, 0) > 0);
        const linger reset{1, 0};
        setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    const auto reply = request("127.0.0.1", port, "GET", "/metrics");
    CHECK(reply.status == 200);
    CHECK(reply.body.size() > 2000 * 2000);
}

TEST_CASE("http: the server's threads take no signals") {
    // Even when the constructing thread has SIGTERM, SIGINT and SIGHUP unblocked.
    sigset_t daemon_signals;
    sigemptyset(&daemon_signals);
    sigaddset(&daemon_signals, SIGTERM);
    sigaddset(&daemon_signals, SIGINT);
    sigaddset(&daemon_signals, SIGHUP);
    sigset_t previous;
    REQUIRE(pthread_sigmask(SIG_UNBLOCK, &daemon_signals, &previous) == 0);

    const auto before = tasks();
    {
        Served served;
        REQUIRE(served.get("/-/healthy").status == 200);
        int server_threads = 0;
        for (const auto& task : tasks()) {
            if (before.count(task) == 0) {
                ++server_threads;
                INFO("thread " << task);
                const uint64_t mask = blocked_signals(task);
                CHECK((mask & signal_bit(SIGTERM)) != 0);
                CHECK((mask & signal_bit(SIGINT)) != 0);
                CHECK((mask & signal_bit(SIGHUP)) != 0);
                CHECK((mask & signal_bit(SIGPIPE)) != 0);
            }
        }
        CHECK(server_threads >= 2);  // max_threads 2
    }
    // The constructing thread's own mask is left as it was.
    sigset_t now;
    REQUIRE(pthread_sigmask(SIG_SETMASK, &previous, &now) == 0);
    CHECK(sigismember(&now, SIGTERM) == 0);
}

TEST_CASE("http: the server stops at once, closing open connections") {
    auto served = std::make_unique<Served>();
    std::vector<Client> clients;
    for (int i = 0; i < 4; ++i) {
        clients.emplace_back(served->port);
    }
    clients.back().send_text("GET /metrics HTTP/1.1\r\n");
    REQUIRE(served->get("/-/ready").status == 200);  // the server has taken the connections

    const auto start = std::chrono::steady_clock::now();
    served.reset();
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    for (const auto& client : clients) {
        CHECK(client.closed_by_server(1s));
    }
}

TEST_CASE("http: basic auth on every path, users swapped live by set_security") {
    HttpServerOptions options = loopback();
    // "u" / "p" and "u" / "q", bcrypt cost 4.
    options.security.basic_auth_users = {
        {"u", "$2y$04$hRz6DmgaX1jsF1RfEBWzPerVc4c27f/pMjnuVp0G.9BwMc7zUkq7e"}};
    Served served(options);
    const std::string right = "Authorization: Basic dTpw\r\n";  // u:p
    const std::string wrong = "Authorization: Basic dTpx\r\n";  // u:q
    const std::string other = "Authorization: Basic eDpw\r\n";  // x:p
    for (const char* path : {"/metrics", "/-/healthy", "/-/ready", "/", "/nope"}) {
        INFO(path);
        const auto none = served.get(path);
        CHECK(none.status == 401);
        CHECK(none.header("www-authenticate") == "Basic realm=\"tcpstatesd\"");
        CHECK(served.get(path, wrong).status == 401);
        CHECK(served.get(path, other).status == 401);
    }
    CHECK(served.get("/metrics", right).status == 200);
    // Every format behind the same check.
    for (const char* accept : {"application/openmetrics-text",
                               "application/vnd.google.protobuf;"
                               "proto=io.prometheus.client.MetricFamily;encoding=delimited"}) {
        INFO(accept);
        const std::string header = "Accept: "s + accept + "\r\n";
        CHECK(served.get("/metrics", header).status == 401);
        CHECK(served.get("/metrics", header + wrong).status == 401);
        CHECK(served.get("/metrics", header + right).status == 200);
    }
    CHECK(served.get("/nope", right).status == 404);

    tcpstatesd::WebSecurity changed;
    changed.basic_auth_users = {
        {"u", "$2y$04$hRz6DmgaX1jsF1RfEBWzPebd2TymSZMkGCRq1nsJUspM3rdnYK2.2"}};
    served.server.set_security(changed);
    CHECK(served.get("/metrics", right).status == 401);
    CHECK(served.get("/metrics", wrong).status == 200);
    served.server.set_security(tcpstatesd::WebSecurity{});
    CHECK(served.get("/metrics").status == 200);
}

TEST_CASE("http: set_security turns TLS on and off on the same port") {
    TempDir dir;
    REQUIRE(std::system(("cd " + dir.path() +
                         " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t "
                         "-addext subjectAltName=IP:127.0.0.1 -keyout k.pem -out c.pem "
                         "2>/dev/null")
                            .c_str()) == 0);
    const std::string web = dir.write("web.yml",
                                      "tls_server_config:\n  cert_file: c.pem\n"
                                      "  key_file: k.pem\n");
    Served served;
    REQUIRE(served.get("/metrics").status == 200);
    served.server.set_security(tcpstatesd::load_web_config_file(web));
    CHECK(served.server.bound_ports().at(0) == served.port);
    // A plain-HTTP request to the TLS server gets no HTTP reply.
    CHECK(served.get("/metrics").status == 0);
    const std::string curl =
        "curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:" + std::to_string(served.port) +
        "/metrics > " + dir.path() + "/code";
    REQUIRE(std::system(curl.c_str()) == 0);
    std::ifstream code(dir.path() + "/code");
    CHECK(std::string(std::istreambuf_iterator<char>(code), {}) == "200");
    // The protobuf format over TLS: a body libprotobuf reads.
    const std::string curl_protobuf =
        "curl -sk -H 'Accept: application/vnd.google.protobuf;"
        "proto=io.prometheus.client.MetricFamily;encoding=delimited' -o " +
        dir.path() + "/body https://127.0.0.1:" + std::to_string(served.port) + "/metrics";
    REQUIRE(std::system(curl_protobuf.c_str()) == 0);
    std::ifstream body(dir.path() + "/body");
    CHECK(tcpstatesd::test::decode_delimited(std::string(std::istreambuf_iterator<char>(body), {}))
              .size() >= 3);
    served.server.set_security(tcpstatesd::WebSecurity{});
    CHECK(served.get("/metrics").status == 200);
}

TEST_CASE("http: a request head not complete within read_header_timeout is cut off") {
    auto options = loopback();
    options.security.http_server.read_header_timeout_seconds = 1;
    Served served(options);
    // Before the connect: the server's deadline runs from its accept, which may come before
    // connect() returns here.
    const auto start = std::chrono::steady_clock::now();
    const Client client(served.port);
    client.send_text("GET /metrics HTTP/1.1\r\n");
    // A header byte every 200 ms: each one would restart an idle timeout.
    bool closed = false;
    while (!closed && std::chrono::steady_clock::now() - start < 10s) {
        closed = client.closed_by_server(200ms);
        if (!closed) (void)send(client.fd, "X", 1, MSG_NOSIGNAL);
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(closed);  // unanswered: closed_by_server saw no byte
    CHECK(elapsed >= 1s);
    // The deadline is 1 s and the thread enforcing it wakes for it; 2 s more for a loaded box.
    CHECK(elapsed < 3s);
    CHECK(served.get("/metrics").status == 200);  // a head sent at once is in time
}

TEST_CASE("http: a response not taken within write_timeout is cut off") {
    auto options = loopback();
    options.security.http_server.write_timeout_seconds = 2;
    Served served(options);
    // The client's receive buffer fixed small (which stops its autotuning, up to 32 MiB on
    // some hosts), so that a body larger than the server's send buffer (net.ipv4.tcp_wmem's
    // maximum, 4 MiB by default) is still being sent when the deadline passes. 8 MB, in long
    // label values: rendering it takes about 0.2 s here, a tenth of the deadline.
    auto& family =
        prometheus::BuildGauge().Name("test_big").Help("Big.").Register(*served.registry);
    const std::string padding(10000, 'p');
    const int samples = 800;
    for (int i = 0; i < samples; ++i) family.Add({{"i", std::to_string(i)}, {"pad", padding}});
    const Client client(served.port);
    const int receive_buffer = 16384;
    REQUIRE(setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) ==
            0);
    const auto sent = std::chrono::steady_clock::now();
    client.send_text("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    char first;
    REQUIRE(recv(client.fd, &first, 1, MSG_PEEK) == 1);  // rendered within the deadline
    // Not reading past the deadline (2 s from the request), plus 1 s for the server to act.
    std::this_thread::sleep_until(sent + 3s);
    std::string received;
    char buffer[65536];
    for (ssize_t n; (n = recv(client.fd, buffer, sizeof buffer, 0)) > 0;)
        received.append(buffer, static_cast<size_t>(n));
    const auto reply = parse_reply(received);
    REQUIRE(reply.status == 200);
    const size_t length = std::stoul(reply.header("content-length"));
    CHECK(length > samples * padding.size());
    CHECK(reply.body.size() < length);  // cut off, not finished
    CHECK(served.get("/-/ready").status == 200);
}

TEST_CASE("http: when every connection is taken, the silent ones go first and a scrape gets in") {
    Served served;
    // 4 addresses x 16 (the per-address limit) = every one of the 64 connections, none of
    // them sending anything.
    std::vector<Client> silent;
    for (int address = 2; address <= 5; ++address)
        for (int i = 0; i < 16; ++i)
            silent.emplace_back(served.port, "127.0.0." + std::to_string(address));
    const auto start = std::chrono::steady_clock::now();
    const auto reply = served.get("/metrics");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(reply.status == 200);
    // Crowded, a connection without a head is closed after 1 s (kCrowdedHeadGrace) rather
    // than at read_header_timeout (5 s); 2 s more for a loaded box.
    CHECK(elapsed < 3s);
    // Once there is room again the others keep read_header_timeout (5 s) from connecting; 3 s
    // more for a loaded box.
    const auto deadline = start + 8s;
    size_t closed = 0;
    for (const auto& client : silent) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        closed += client.closed_by_server(std::max(left, 0ms)) ? 1 : 0;
    }
    CHECK(closed == silent.size());
}

TEST_CASE("http: a query of any length is served, a NUL in the path or two lengths are 400") {
    Served served;
    // 477 "a=b&" closed the connection unanswered, 500 held it until the idle timeout.
    std::string query;
    for (int i = 0; i < 2000; ++i) query += "a=b&";
    for (const size_t count : {size_t{1}, size_t{477}, size_t{500}, size_t{2000}}) {
        INFO(count << " parameters");
        const auto reply = served.get("/metrics?" + query.substr(0, 4 * count));
        CHECK(reply.status == 200);
        CHECK(reply.body.find("test_events_total") != std::string::npos);
    }
    CHECK(served.get("/metrics?").status == 200);
    // A request line beyond the connection's memory is 414, as before.
    CHECK(served.get("/metrics?" + std::string(40000, 'a')).status == 414);

    auto nul = served.get("/metrics%00");
    CHECK(nul.status == 400);
    CHECK(nul.body == "Bad Request: the path contains %00\n");
    CHECK(served.get("/metrics%00?x").status == 400);
    CHECK(served.get("/metric%73").status == 200);  // any other escape decodes as usual

    const auto two = parse_reply(exchange(
        "127.0.0.1", served.port,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n"
        "hello"));
    CHECK(two.status == 400);
    CHECK(two.header("connection") == "close");
    const auto same = served.get("/metrics", "Content-Length: 0\r\nContent-Length: 0\r\n");
    CHECK(same.status == 200);
}

// The HTTP endpoint: /metrics (or the configured telemetry path), /-/healthy, /-/ready and a
// landing page, served by civetweb worker threads. A scrape collects the registry (and any
// extra collectables), serializes with prometheus-cpp's TextSerializer and gzips when the
// client accepts it; no lock of ours is held while doing so.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct mg_connection;
struct mg_context;

namespace prometheus {
class Collectable;
class Counter;
template <typename T>
class Family;
class Histogram;
class Registry;
}  // namespace prometheus

namespace tcpstatesd {

struct HttpServerOptions {
    // "ipv4:port", "[ipv6]:port" or ":port" for every local address. Debian 12's civetweb has
    // no IPv6: there ":port" covers IPv4 only and "[ipv6]:port" is an HttpError.
    std::vector<std::string> listen_addresses{":9977"};
    std::string telemetry_path = "/metrics";
    unsigned max_threads = 4;
};

class HttpError : public std::runtime_error {
    using runtime_error::runtime_error;
};

class HttpServer {
public:
    // Starts serving at once; throws HttpError naming the address and the cause when it cannot
    // listen. Registers tcpstatesd_scrapes_total and tcpstatesd_scrape_duration_seconds in
    // `registry` (merged with existing families of the same name, so a server can be
    // re-created on the same registry). A scrape returns registry->Collect() followed by each
    // of `collectables`' Collect(). `healthy`, `ready` and the collectables are called from
    // the worker threads, concurrently: they must be thread-safe.
    HttpServer(const HttpServerOptions& options, std::shared_ptr<prometheus::Registry> registry,
               std::function<bool()> healthy, std::function<bool()> ready,
               std::vector<std::shared_ptr<const prometheus::Collectable>> collectables = {});
    // Stops accepting, finishes the requests in flight and joins the workers.
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // The ports actually bound, one per listening socket (resolves ":0" in tests).
    std::vector<uint16_t> bound_ports() const;

private:
    struct Response;
    static int handle_request(mg_connection* conn);
    static int log_message(const mg_connection* conn, const char* message);
    Response respond(const std::string& method, const std::string& path,
                     const char* accept_encoding);
    Response scrape(bool gzip);

    std::string telemetry_path_;
    std::shared_ptr<prometheus::Registry> registry_;
    std::vector<std::shared_ptr<const prometheus::Collectable>> collectables_;
    std::function<bool()> healthy_;
    std::function<bool()> ready_;
    prometheus::Counter* scrapes_ = nullptr;
    prometheus::Histogram* scrape_duration_ = nullptr;
    mg_context* context_ = nullptr;
    std::vector<std::string> wake_hosts_;  // per listen address, where to connect to reach it

    // civetweb says which address failed and why only in messages it logs while setting up
    // its sockets (mg_start2's error text is just "Failed to setup server ports"); they are
    // kept until the constructor has used them.
    std::mutex log_mutex_;
    bool starting_ = true;
    std::vector<std::string> startup_messages_;
};

// Translates one listen address of HttpServerOptions into civetweb's `listening_ports`
// syntax, for a civetweb built with or without IPv6. Throws HttpError on bad syntax and on
// IPv6 addresses when `ipv6_available` is false. Exposed for the tests.
std::string civetweb_listen_spec(const std::string& address, bool ipv6_available);

// True when the client's Accept-Encoding header (nullptr when absent) accepts gzip.
bool accepts_gzip(const char* accept_encoding);

}  // namespace tcpstatesd

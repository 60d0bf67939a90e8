// The HTTP endpoint: /metrics (or the configured telemetry path), /-/healthy, /-/ready and a
// landing page, served by GNU libmicrohttpd (one MHD daemon per listen address, each an
// epoll thread pool). This class owns the daemons (start, restart for new TLS settings, stop)
// and the scrape with its metrics: it collects the registry (and any extra collectables),
// serializes in the format the client asks for (exposition_format.hpp: the text format by
// default, OpenMetrics or protobuf) and gzips when the client accepts it; no
// lock of ours is held while doing so, and concurrent scrapes share the bodies
// (shared_bodies.hpp). The sockets come from listening_socket.hpp, the answers from
// routes.hpp, the deadlines of slow clients from connection_deadlines.hpp, basic auth and
// client certificates (the --web.config.file's WebSecurity; set_security() changes them and
// the deadlines while serving) from access_policy.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/listen_address.hpp"
#include "config/web_config.hpp"
#include "exposition/collection.hpp"
#include "http/connection_deadlines.hpp"
#include "http/http_error.hpp"
#include "http/listening_socket.hpp"
#include "http/routes.hpp"
#include "http/shared_bodies.hpp"

struct MHD_Daemon;

namespace prometheus {
class Counter;
template <typename T>
class Family;
class Histogram;
class Registry;
}  // namespace prometheus

namespace tcpstatesd {

// What to serve. It has no defaults of its own: daemon/runtime/daemon.cpp fills it from the
// configuration's WebConfig (which has them and has validated every value); tests set each
// field.
struct HttpServerOptions {
    std::vector<ListenAddress> listen_addresses;  // unless listening sockets are given
    std::string telemetry_path;
    // Threads per listen address, 1..kHttpConnectionLimit. Each thread serves many connections with
    // non-blocking I/O, so slow or idle clients do not occupy a thread.
    unsigned max_threads = 0;
    // TLS and basic authentication; WebSecurity{} is plain HTTP open to everyone.
    WebSecurity security;
};

class HttpServer {
public:
    // Starts serving at once; throws HttpError naming the address and the cause when it cannot
    // listen. Registers tcpstatesd_scrapes_total and tcpstatesd_scrape_duration_seconds in
    // `registry` (merged with existing families of the same name, so a server can be
    // re-created on the same registry). A scrape returns registry->Collect() followed by each
    // of `collectables`' collect(). `healthy`, `ready` and the collectables are called from
    // the server's threads, concurrently: they must be thread-safe. The server's threads run
    // with every signal blocked, whatever the caller's signal mask.
    HttpServer(const HttpServerOptions& options, std::shared_ptr<prometheus::Registry> registry,
               std::function<bool()> healthy, std::function<bool()> ready,
               std::vector<std::shared_ptr<const Collector>> collectables = {});
    // The same on sockets already listening (socket activation; or bound before the daemon
    // dropped its capabilities), instead of options.listen_addresses.
    HttpServer(const HttpServerOptions& options, std::vector<Listener> listeners,
               std::shared_ptr<prometheus::Registry> registry, std::function<bool()> healthy,
               std::function<bool()> ready,
               std::vector<std::shared_ptr<const Collector>> collectables = {});
    // Stops accepting, closes every connection (a response being computed is finished
    // first, not sent) and joins the threads.
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // The ports actually bound, one per listening socket, in order (resolves ":0" in tests).
    std::vector<uint16_t> bound_ports() const;

    // Applies a new web config. Users and passwords take effect for the next request. When
    // the TLS settings change, a new MHD daemon per address is started on the same listening
    // socket (so the port is never closed and never contended) and then the old one is
    // stopped, closing the connections it still had. If a new daemon cannot start (e.g.
    // GnuTLS refuses the key), throws HttpError and the running ones serve on unchanged.
    // Called from one thread at a time.
    void set_security(const WebSecurity& security);

private:
    struct StopDaemon {
        void operator()(MHD_Daemon* daemon) const;
    };
    // What the callbacks of the daemons of one listen address are given.
    struct Listening {
        HttpServer* server;
        size_t index;  // in listener_names_
    };
    // Starts one MHD daemon on listen_fd (which it takes over) for listening_[index]; throws
    // HttpError.
    MHD_Daemon* start_daemon(int listen_fd, const WebSecurity& security, size_t index);
    // The settings the next request is checked against.
    std::shared_ptr<const WebSecurity> current_security();
    Response scrape(ExpositionFormat format, bool gzip);
    std::string render(ExpositionFormat format, Encoding encoding);
    void log(const char* message);

    std::shared_ptr<prometheus::Registry> registry_;
    std::vector<std::shared_ptr<const Collector>> collectables_;
    prometheus::Counter* scrapes_ = nullptr;
    prometheus::Histogram* scrape_duration_ = nullptr;
    Routes routes_;

    // MHD explains a failed start only in messages it logs meanwhile; they are kept until
    // start_daemon has used them. Threads of daemons already started may log concurrently.
    std::mutex log_mutex_;
    bool starting_ = false;
    std::string startup_log_;

    std::mutex security_mutex_;
    std::shared_ptr<const WebSecurity> security_;
    // The settings the running daemons were started with: MHD is handed pointers to their
    // PEM texts, which must outlive the daemons whatever users a reload swaps in.
    std::shared_ptr<const WebSecurity> daemons_security_;

    std::vector<std::string> listener_names_;  // Listener::name, one per daemon
    std::vector<Listening> listening_;         // one per daemon; never resized
    unsigned max_threads_;
    std::vector<uint16_t> ports_;
    SharedBodies bodies_;
    std::unique_ptr<ConnectionDeadlines> deadlines_;  // made with every signal blocked
    // Declared last so that it is destroyed first: the daemons' threads use the members above,
    // and their responses hold bodies.
    std::vector<std::unique_ptr<MHD_Daemon, StopDaemon>> daemons_;
};

}  // namespace tcpstatesd

#include "http/http_server.hpp"

#include <fcntl.h>
#include <microhttpd.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string_view>
#include <utility>

#include "http/access_policy.hpp"
#include "http/content_encoding.hpp"
#include "http/listening_socket.hpp"

namespace tcpstatesd {

namespace {

// One client address may hold at most this many of the kHttpConnectionLimit connections, so
// a single host cannot lock Prometheus out.
constexpr unsigned kPerAddressLimit = 16;
// A connection with no traffic for this long is closed (idle keep-alive or stalled client);
// a kept-alive connection's next request head is due within as long.
constexpr unsigned kConnectionTimeoutSeconds = 10;
// Each connection's request line, headers and response headers live in a pool of this size;
// a request that does not fit is answered 414 or 431 and closed.
constexpr size_t kConnectionMemory = size_t{32} * 1024;

// MHD's threads inherit the signal mask of the thread that creates them. With every signal
// blocked there, SIGTERM/SIGINT/SIGHUP meant for the reactor's signalfd can never be taken
// (and acted on with the default action) by a server thread. SIGPIPE needs no handling:
// MHD sends with MSG_NOSIGNAL on Linux (MHD_FEATURE_AUTOSUPPRESS_SIGPIPE).
class AllSignalsBlocked {
public:
    AllSignalsBlocked() {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &previous_);
    }
    ~AllSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
    AllSignalsBlocked(const AllSignalsBlocked&) = delete;
    AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

private:
    sigset_t previous_;
};

// What the server knows of a request before its handler answers, kept in libmicrohttpd's
// per-request pointer. Static marks: nothing to free on any of the ways a connection ends.
struct RequestMark {
    bool head_received;
    bool nul_in_path;
};
constexpr RequestMark kLineReceived{false, false};
constexpr RequestMark kLineReceivedNul{false, true};
constexpr RequestMark kHeadReceived{true, false};
constexpr RequestMark kHeadReceivedNul{true, true};

void* mark(const RequestMark& m) {
    return const_cast<RequestMark*>(&m);
}

// Two Content-Length headers that differ leave the end of the request ambiguous (RFC 9112,
// 6.3); libmicrohttpd would read by the first.
bool conflicting_content_lengths(MHD_Connection* connection) {
    struct Seen {
        const char* first = nullptr;
        bool conflict = false;
    } seen;
    MHD_KeyValueIterator each = [](void* cls, MHD_ValueKind /*kind*/, const char* key,
                                   const char* value) -> MHD_Result {
        auto* s = static_cast<Seen*>(cls);
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0) return MHD_YES;
        if (s->first == nullptr)
            s->first = value;
        else if (std::strcmp(s->first, value) != 0)
            s->conflict = true;
        return MHD_YES;
    };
    MHD_get_connection_values(connection, MHD_HEADER_KIND, each, &seen);
    return seen.conflict;
}

std::chrono::seconds seconds(unsigned count) {
    return std::chrono::seconds(count);
}

}  // namespace

HttpServer::HttpServer(const HttpServerOptions& options,
                       std::shared_ptr<prometheus::Registry> registry,
                       std::function<bool()> healthy, std::function<bool()> ready,
                       std::vector<std::shared_ptr<const Collector>> collectables)
    : HttpServer(options, listen_on_each(options.listen_addresses), std::move(registry),
                 std::move(healthy), std::move(ready), std::move(collectables)) {}

HttpServer::HttpServer(const HttpServerOptions& options, std::vector<Listener> listeners,
                       std::shared_ptr<prometheus::Registry> registry,
                       std::function<bool()> healthy, std::function<bool()> ready,
                       std::vector<std::shared_ptr<const Collector>> collectables)
    : registry_(std::move(registry)),
      collectables_(std::move(collectables)),
      routes_{options.telemetry_path,
              [this](ExpositionFormat format, bool gzip) { return scrape(format, gzip); },
              std::move(healthy), std::move(ready)},
      security_(std::make_shared<const WebSecurity>(options.security)),
      daemons_security_(security_),
      max_threads_(options.max_threads),
      bodies_(
          [this](ExpositionFormat format, Encoding encoding) { return render(format, encoding); }) {
    if (listeners.empty()) {
        throw HttpError("no socket to listen on");
    }
    if (options.max_threads == 0 || options.max_threads > kHttpConnectionLimit) {
        throw HttpError("max_threads must be 1.." + std::to_string(kHttpConnectionLimit));
    }

    if (options.security.tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        throw HttpError("TLS is configured in " + options.security.source +
                        " but this libmicrohttpd was built without TLS support");
    }

    scrapes_ = &prometheus::BuildCounter()
                    .Name("tcpstatesd_scrapes_total")
                    .Help("Requests for the telemetry path served (GET and HEAD).")
                    .Register(*registry_)
                    .Add({});
    scrape_duration_ =
        &prometheus::BuildHistogram()
             .Name("tcpstatesd_scrape_duration_seconds")
             .Help(
                 "Time to collect, serialize and compress one telemetry body (not observed "
                 "for scrapes given a body rendered for another).")
             .Register(*registry_)
             .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                              0.025, 0.05, 0.1, 0.25, 0.5, 1});

    std::string addresses;
    listening_.reserve(listeners.size());
    for (auto& listener : listeners) {
        listening_.push_back({this, listener_names_.size()});
        addresses += (addresses.empty() ? "\"" : ", \"") + listener.name + "\"";
        listener_names_.push_back(listener.name);
    }
    {
        const AllSignalsBlocked blocked;
        deadlines_ = std::make_unique<ConnectionDeadlines>(listeners.size(), kHttpConnectionLimit);
        for (size_t i = 0; i < listeners.size(); ++i) {
            ports_.push_back(local_port(listeners[i].socket));
            daemons_.emplace_back(start_daemon(listeners[i].socket.release(), *security_, i));
        }
    }
    spdlog::info("HTTP server listening on {} ({}, {}, telemetry path {})", addresses,
                 options.security.tls ? "HTTPS" : "plain HTTP",
                 options.security.basic_auth_users.empty() ? "no authentication" : "basic auth",
                 routes_.telemetry_path);
}

MHD_Daemon* HttpServer::start_daemon(int listen_fd, const WebSecurity& security, size_t index) {
    const std::string& name = listener_names_[index];
    // Captureless lambdas: they convert to the C callbacks and, being defined in a member
    // function, may call the private members.
    MHD_LogCallback log_callback = [](void* self, const char* format, va_list arguments) {
        char message[512];
        std::vsnprintf(message, sizeof message, format, arguments);
        static_cast<HttpServer*>(self)->log(message);
    };
    MHD_AccessHandlerCallback handle_request =
        [](void* self, MHD_Connection* connection, const char* url, const char* method,
           const char* /*version*/, const char* /*upload_data*/, size_t* upload_data_size,
           void** request_state) -> MHD_Result {
        // MHD calls once the headers are in, then with each piece of a request body, then
        // once more when the request is complete. Answering only then keeps the connection
        // open for the next request (an answer queued early makes MHD close it).
        auto* server = static_cast<HttpServer*>(self);
        const auto* request =
            static_cast<const RequestMark*>(*request_state ? *request_state : mark(kLineReceived));
        if (!request->head_received) {
            *request_state = mark(request->nul_in_path ? kHeadReceivedNul : kHeadReceived);
            server->deadlines_->head_received(
                connection, seconds(server->current_security()->http_server.write_timeout_seconds));
            return MHD_YES;
        }
        if (*upload_data_size != 0) {
            *upload_data_size = 0;  // a request body: nothing here reads one
            return MHD_YES;
        }
        // MHD decodes "%00" into the end of the path: "/metrics%00" would be "/metrics".
        if (request->nul_in_path)
            return answer_bad_request(connection, "the path contains %00") ? MHD_YES : MHD_NO;
        if (conflicting_content_lengths(connection))
            return answer_bad_request(connection, "Content-Length headers that differ") ? MHD_YES
                                                                                        : MHD_NO;
        return answer(connection, method, url, server->routes_, *server->current_security())
                   ? MHD_YES
                   : MHD_NO;
    };
    // Runs when the request line is in, before MHD parses the query or decodes the path.
    using UriLogCallback = void* (*)(void*, const char*, MHD_Connection*);
    UriLogCallback request_line = [](void* /*listening*/, const char* uri,
                                     MHD_Connection* /*connection*/) -> void* {
        // MHD stores each query parameter as a record in the connection's 32 KiB pool (about
        // 60 bytes for the 2 of "a&"), and 0.9.75 neither answers nor closes cleanly when the
        // pool runs out. Nothing here reads a parameter: the query is cut before MHD parses
        // it, so any query is served. MHD has found the '?' already and parses what follows
        // it; the line lies in MHD's own read buffer, which is writable.
        char* query = const_cast<char*>(std::strchr(uri, '?'));
        const size_t path_length = query ? static_cast<size_t>(query - uri) : std::strlen(uri);
        if (query) query[1] = '\0';
        const bool nul = std::string_view(uri, path_length).find("%00") != std::string_view::npos;
        return mark(nul ? kLineReceivedNul : kLineReceived);
    };
    MHD_NotifyConnectionCallback connection_event = [](void* context, MHD_Connection* connection,
                                                       void** /*socket_context*/,
                                                       MHD_ConnectionNotificationCode code) {
        const auto* listening = static_cast<const Listening*>(context);
        HttpServer* server = listening->server;
        if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
            server->deadlines_->closed(connection);
            return;
        }
        const MHD_ConnectionInfo* info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        server->deadlines_->opened(
            connection, info->connect_fd, listening->index,
            seconds(server->current_security()->http_server.read_header_timeout_seconds));
    };
    MHD_RequestCompletedCallback request_done = [](void* context, MHD_Connection* connection,
                                                   void** /*request_state*/,
                                                   MHD_RequestTerminationCode /*code*/) {
        // Also when the connection is closing: closed() follows.
        static_cast<const Listening*>(context)->server->deadlines_->response_sent(
            connection, seconds(kConnectionTimeoutSeconds));
    };
    void* listening = &listening_[index];

    // MHD owns the socket from here on: it closes it when stopped and also when it fails to
    // start (checked with 0.9.75). MHD_USE_ITC makes MHD_quiesce_daemon possible.
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    std::vector<MHD_OptionItem> items = {
        {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(log_callback), this},
        {MHD_OPTION_LISTEN_SOCKET, listen_fd, nullptr},
        {MHD_OPTION_THREAD_POOL_SIZE, max_threads_, nullptr},
        {MHD_OPTION_CONNECTION_LIMIT, kHttpConnectionLimit, nullptr},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, kPerAddressLimit, nullptr},
        {MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutSeconds, nullptr},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, nullptr},
        {MHD_OPTION_URI_LOG_CALLBACK, reinterpret_cast<intptr_t>(request_line), listening},
        {MHD_OPTION_NOTIFY_CONNECTION, reinterpret_cast<intptr_t>(connection_event), listening},
        {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(request_done), listening},
    };
    if (security.tls) {
        const TlsServerConfig& tls = *security.tls;
        flags |= MHD_USE_TLS;
        // The texts belong to daemons_security_ (or to the settings set_security is
        // applying, which become it): alive as long as the daemon.
        items.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(tls.cert_pem.c_str())});
        items.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(tls.key_pem.c_str())});
        items.push_back(
            {MHD_OPTION_HTTPS_PRIORITIES, 0, const_cast<char*>(tls_priorities(tls.min_version))});
        if (!tls.client_ca_pem.empty())
            items.push_back(
                {MHD_OPTION_HTTPS_MEM_TRUST, 0, const_cast<char*>(tls.client_ca_pem.c_str())});
        items.push_back(client_certificate_option(tls.client_auth));
    }
    items.push_back({MHD_OPTION_END, 0, nullptr});
    {
        std::lock_guard lock(log_mutex_);
        starting_ = true;
        startup_log_.clear();
    }
    MHD_Daemon* daemon = MHD_start_daemon(flags, 0, nullptr, nullptr, handle_request, this,
                                          MHD_OPTION_ARRAY, items.data(), MHD_OPTION_END);
    std::lock_guard lock(log_mutex_);
    starting_ = false;
    if (daemon == nullptr) {
        throw HttpError("cannot serve HTTP" + std::string(security.tls ? "S" : "") + " on \"" +
                        name + "\": libmicrohttpd failed to start" +
                        (startup_log_.empty() ? "" : ": " + startup_log_));
    }
    return daemon;
}

void HttpServer::set_security(const WebSecurity& security) {
    auto next = std::make_shared<const WebSecurity>(security);
    if (next->tls == current_security()->tls) {
        std::lock_guard lock(security_mutex_);
        security_ = std::move(next);
        return;
    }
    if (next->tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        throw HttpError("TLS is configured in " + next->source +
                        " but this libmicrohttpd was built without TLS support");
    // The new daemons accept on a duplicate of each listening socket alongside the old ones
    // until those are quiesced: no moment without a listener, no second bind.
    std::vector<std::unique_ptr<MHD_Daemon, StopDaemon>> started;
    {
        const AllSignalsBlocked blocked;
        for (size_t i = 0; i < daemons_.size(); ++i) {
            const MHD_DaemonInfo* info =
                MHD_get_daemon_info(daemons_[i].get(), MHD_DAEMON_INFO_LISTEN_FD);
            const int fd = info == nullptr ? -1 : fcntl(info->listen_fd, F_DUPFD_CLOEXEC, 0);
            if (fd < 0)
                throw HttpError("cannot restart the HTTP server on \"" + listener_names_[i] +
                                "\": cannot duplicate its listening socket");
            started.emplace_back(start_daemon(fd, *next, i));
        }
    }
    for (auto& old : daemons_) {
        const int fd = MHD_quiesce_daemon(old.get());
        if (fd >= 0) close(fd);  // the new daemon holds its own duplicate
    }
    daemons_ = std::move(started);  // stops the old daemons
    daemons_security_ = next;
    spdlog::info("HTTP server restarted in place with the new TLS settings ({})",
                 next->tls ? "HTTPS" : "plain HTTP");
    std::lock_guard lock(security_mutex_);
    security_ = std::move(next);
}

HttpServer::~HttpServer() {
    // MHD wakes its threads through an eventfd: stopping takes milliseconds.
    daemons_.clear();
}

void HttpServer::StopDaemon::operator()(MHD_Daemon* daemon) const {
    MHD_stop_daemon(daemon);
}

std::vector<uint16_t> HttpServer::bound_ports() const {
    return ports_;
}

void HttpServer::log(const char* message) {
    std::string_view text(message);
    while (!text.empty() && text.back() == '\n') {
        text.remove_suffix(1);
    }
    spdlog::debug("libmicrohttpd: {}", text);
    std::lock_guard lock(log_mutex_);
    if (starting_) {
        startup_log_ += (startup_log_.empty() ? "" : "; ") + std::string(text);
    }
}

std::shared_ptr<const WebSecurity> HttpServer::current_security() {
    std::lock_guard lock(security_mutex_);
    return security_;
}

Response HttpServer::scrape(ExpositionFormat format, bool use_gzip) {
    const auto deadline = seconds(current_security()->http_server.write_timeout_seconds);
    Response response{200,
                      content_type(format),
                      bodies_.get(format, use_gzip ? Encoding::Gzip : Encoding::Identity, deadline),
                      {{"Vary", "Accept, Accept-Encoding"}}};
    if (use_gzip) response.headers.emplace_back("Content-Encoding", "gzip");
    scrapes_->Increment();
    return response;
}

std::string HttpServer::render(ExpositionFormat format, Encoding encoding) {
    const auto start = std::chrono::steady_clock::now();
    std::string text;
    {
        // Each Collect() copies the values out under prometheus-cpp's own short locks; the
        // serialization works on that copy, holding nothing, and frees it before compressing.
        Collection collection{registry_->Collect(), {}};
        for (const auto& collector : collectables_) collection.append(collector->collect());
        text = serialize(format, collection);
    }
    if (encoding == Encoding::Gzip) text = gzip(text);
    scrape_duration_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return text;
}

}  // namespace tcpstatesd

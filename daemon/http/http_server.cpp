#include "http/http_server.hpp"

#include <arpa/inet.h>
#include <crypt.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "version.hpp"

namespace tcpstatesd {

namespace {

// Bounds per listen address. Connections are spread over the max_threads threads, each
// taking at most its share of kConnectionLimit; one client address may hold at most
// kPerAddressLimit of them, so a single host cannot lock Prometheus out.
constexpr unsigned kConnectionLimit = 64;
constexpr unsigned kPerAddressLimit = 16;
// A connection with no traffic for this long is closed (idle keep-alive or stalled client).
constexpr unsigned kConnectionTimeoutSeconds = 10;
// Each connection's request line, headers and response headers live in a pool of this size;
// a request that does not fit is answered 414 or 431 and closed.
constexpr size_t kConnectionMemory = size_t{32} * 1024;
constexpr int kListenBacklog = 128;
constexpr const char* kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

bool is_decimal_port(std::string_view text) {
    unsigned value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return !text.empty() && error == std::errc{} && end == text.data() + text.size() &&
           value <= 65535;
}

std::string gzip(const std::string& data) {
    z_stream stream{};
    // windowBits 15 + 16 selects the gzip wrapper rather than raw zlib.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        throw std::runtime_error("zlib deflateInit2 failed");
    }
    std::string out(deflateBound(&stream, data.size()), '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    const int result = deflate(&stream, Z_FINISH);
    deflateEnd(&stream);
    if (result != Z_STREAM_END) {
        throw std::runtime_error("zlib deflate did not finish");
    }
    out.resize(stream.total_out);
    return out;
}

std::string html_escape(const std::string& text) {
    std::string out;
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t");
    return std::string(text.substr(first, last - first + 1));
}

class Socket {
public:
    explicit Socket(int fd) : fd_(fd) {}
    ~Socket() {
        if (fd_ >= 0) {
            close(fd_);
        }
    }
    Socket(Socket&& other) noexcept : fd_(other.release()) {}
    Socket& operator=(Socket&&) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

private:
    int fd_;
};

[[noreturn]] void throw_socket_error(const std::string& address, const char* call, int error) {
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
    throw HttpError("cannot listen on \"" + address + "\": " + call + ": " + std::strerror(error) +
                    hint);
}

// A listen address as a socket address.
struct Endpoint {
    sockaddr_storage address{};
    socklen_t length = 0;
    bool every_address = false;  // ":port"
};

Endpoint parse_listen_address(const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos ||
        !is_decimal_port(std::string_view(address).substr(colon + 1))) {
        throw HttpError("invalid listen address \"" + address +
                        "\": expected host:port, [ipv6]:port or :port with a port 0-65535");
    }
    const std::string host = address.substr(0, colon);
    const uint16_t network_port =
        htons(static_cast<uint16_t>(std::stoul(address.substr(colon + 1))));
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if ((host.find_first_of("[]") != std::string::npos && !bracketed) ||
        (!bracketed && host.find(':') != std::string::npos)) {
        throw HttpError("invalid listen address \"" + address +
                        "\": an IPv6 address must be written in brackets, e.g. [::1]:9977");
    }
    Endpoint endpoint;
    endpoint.every_address = host.empty();
    auto* v4 = reinterpret_cast<sockaddr_in*>(&endpoint.address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&endpoint.address);
    if (endpoint.every_address || bracketed) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = network_port;
        endpoint.length = sizeof *v6;
        const std::string literal = bracketed ? host.substr(1, host.size() - 2) : "::";
        if (inet_pton(AF_INET6, literal.c_str(), &v6->sin6_addr) == 1) {
            return endpoint;
        }
    } else {
        v4->sin_family = AF_INET;
        v4->sin_port = network_port;
        endpoint.length = sizeof *v4;
        if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
            return endpoint;
        }
    }
    throw HttpError("invalid listen address \"" + address +
                    "\": the host must be an IP address (e.g. 127.0.0.1 or [::1]), not a name");
}

// A bound, listening, non-blocking socket for one listen address. ":port" is one IPv6 socket
// that also accepts IPv4 (IPV6_V6ONLY off), or 0.0.0.0 when the kernel has no IPv6;
// "[v6]:port" accepts IPv6 only, an IPv4 address IPv4 only.
Socket listen_on(const std::string& address) {
    Endpoint endpoint = parse_listen_address(address);
    constexpr int kType = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
    int created = socket(endpoint.address.ss_family, kType, 0);
    if (created < 0 && errno == EAFNOSUPPORT && endpoint.every_address) {
        spdlog::warn("no IPv6 on this host: \"{}\" listens on IPv4 only", address);
        const auto port = reinterpret_cast<const sockaddr_in6*>(&endpoint.address)->sin6_port;
        endpoint.address = {};
        auto* v4 = reinterpret_cast<sockaddr_in*>(&endpoint.address);
        v4->sin_family = AF_INET;
        v4->sin_port = port;  // address 0.0.0.0
        endpoint.length = sizeof *v4;
        created = socket(AF_INET, kType, 0);
    }
    Socket fd(created);
    if (fd.get() < 0) {
        throw_socket_error(address, "socket", errno);
    }
    const int on = 1;
    // A restarted daemon can bind again while connections of its predecessor linger in
    // TIME_WAIT; a port with a live listener still fails with EADDRINUSE.
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
        throw_socket_error(address, "setsockopt(SO_REUSEADDR)", errno);
    }
    if (endpoint.address.ss_family == AF_INET6) {
        // Set explicitly, whatever the sysctl net.ipv6.bindv6only says.
        const int v6only = endpoint.every_address ? 0 : 1;
        if (setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) != 0) {
            throw_socket_error(address, "setsockopt(IPV6_V6ONLY)", errno);
        }
    }
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length) !=
        0) {
        throw_socket_error(address, "bind", errno);
    }
    if (listen(fd.get(), kListenBacklog) != 0) {
        throw_socket_error(address, "listen", errno);
    }
    return fd;
}

uint16_t local_port(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        throw std::system_error(errno, std::generic_category(), "getsockname");
    }
    return ntohs(address.ss_family == AF_INET6
                     ? reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port
                     : reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

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

// The client_auth_type values, addressable as the notify callback's closure.
constexpr ClientAuth kClientAuths[] = {
    ClientAuth::NoClientCert, ClientAuth::RequestClientCert, ClientAuth::RequireAnyClientCert,
    ClientAuth::VerifyClientCertIfGiven, ClientAuth::RequireAndVerifyClientCert};

// VerifyClientCertIfGiven: GnuTLS's own verification (gnutls_session_set_verify_cert) also
// fails a client that sends no certificate, so a certificate that was sent is checked here,
// during the handshake; non-zero fails it.
int verify_if_given(gnutls_session_t session) {
    unsigned count = 0;
    if (gnutls_certificate_get_peers(session, &count) == nullptr || count == 0) return 0;
    unsigned status = 0;
    return gnutls_certificate_verify_peers2(session, &status) == GNUTLS_E_SUCCESS && status == 0
               ? 0
               : -1;
}

// MHD asks for a client certificate (GNUTLS_CERT_REQUEST) when given a trust list and never
// verifies it. Each TLS session is set up here, before its handshake, so that GnuTLS itself
// requires and verifies the certificate: a client refused fails the handshake.
void configure_client_auth(void* mode, MHD_Connection* connection, void** /*context*/,
                           MHD_ConnectionNotificationCode code) {
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const MHD_ConnectionInfo* info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == nullptr || info->tls_session == nullptr) return;
    auto session = static_cast<gnutls_session_t>(info->tls_session);
    switch (*static_cast<const ClientAuth*>(mode)) {
        case ClientAuth::NoClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE);
            break;
        case ClientAuth::RequestClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
            break;
        case ClientAuth::RequireAnyClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
            break;
        case ClientAuth::VerifyClientCertIfGiven:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
            gnutls_session_set_verify_function(session, verify_if_given);
            break;
        case ClientAuth::RequireAndVerifyClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
            gnutls_session_set_verify_cert(session, nullptr, 0);
            break;
    }
}

// Checked for unknown users so that the time to answer does not tell which user names exist
// (cost 10, the usual one; any password fails on it since the user is unknown anyway).
constexpr const char* kDummyHash = "$2y$10$QmVjYXVzZSBpdCBpcyB0a.aBfqphNeHOrVUKWeliUKagM/lBAO19m";

bool bcrypt_matches(const std::string& password, const std::string& hash) {
    auto data = std::make_unique<crypt_data>();  // about 32 KiB: not for a thread's stack
    const char* computed = crypt_r(password.c_str(), hash.c_str(), data.get());
    if (computed == nullptr || std::strlen(computed) != hash.size()) return false;
    unsigned char difference = 0;  // compared in full: no early exit to time
    for (size_t i = 0; i < hash.size(); ++i)
        difference |= static_cast<unsigned char>(computed[i] ^ hash[i]);
    return difference == 0;
}

}  // namespace

bool accepts_gzip(const char* accept_encoding) {
    if (accept_encoding == nullptr) {
        return false;
    }
    std::string_view rest(accept_encoding);
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);

        const auto semicolon = item.find(';');
        std::string coding = trim(item.substr(0, semicolon));
        for (char& c : coding) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        if (coding != "gzip") {
            continue;
        }
        if (semicolon == std::string_view::npos) {
            return true;
        }
        // "gzip;q=0" (RFC 9110 12.5.3) explicitly refuses gzip; any other weight accepts it.
        const std::string parameter = trim(item.substr(semicolon + 1));
        if (parameter.rfind("q=", 0) != 0 && parameter.rfind("Q=", 0) != 0) {
            return true;
        }
        const std::string weight = parameter.substr(2);
        return weight.find_first_not_of("0.") != std::string::npos;
    }
    return false;
}

struct HttpServer::Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

HttpServer::HttpServer(const HttpServerOptions& options,
                       std::shared_ptr<prometheus::Registry> registry,
                       std::function<bool()> healthy, std::function<bool()> ready,
                       std::vector<std::shared_ptr<const prometheus::Collectable>> collectables)
    : telemetry_path_(options.telemetry_path),
      registry_(std::move(registry)),
      collectables_(std::move(collectables)),
      healthy_(std::move(healthy)),
      ready_(std::move(ready)),
      security_(std::make_shared<const WebSecurity>(options.security)),
      daemons_security_(security_),
      addresses_(options.listen_addresses),
      max_threads_(options.max_threads) {
    if (telemetry_path_.empty() || telemetry_path_.front() != '/' || telemetry_path_ == "/" ||
        telemetry_path_ == "/-/healthy" || telemetry_path_ == "/-/ready") {
        throw HttpError("invalid telemetry path \"" + telemetry_path_ +
                        "\": it must start with '/' and not be /, /-/healthy or /-/ready");
    }
    if (options.listen_addresses.empty()) {
        throw HttpError("no listen address given");
    }
    if (options.max_threads == 0 || options.max_threads > kConnectionLimit) {
        throw HttpError("max_threads must be 1.." + std::to_string(kConnectionLimit));
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
             .Help("Time to collect, serialize and compress one telemetry response.")
             .Register(*registry_)
             .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                              0.025, 0.05, 0.1, 0.25, 0.5, 1});

    std::string addresses;
    {
        const AllSignalsBlocked blocked;
        for (const auto& address : options.listen_addresses) {
            Socket listener = listen_on(address);
            const uint16_t port = local_port(listener.get());
            daemons_.emplace_back(start_daemon(listener.release(), *security_, address));
            ports_.push_back(port);
            addresses += (addresses.empty() ? "\"" : ", \"") + address + "\"";
        }
    }
    spdlog::info("HTTP server listening on {} ({}, {}, telemetry path {})", addresses,
                 options.security.tls ? "HTTPS" : "plain HTTP",
                 options.security.basic_auth_users.empty() ? "no authentication" : "basic auth",
                 telemetry_path_);
}

MHD_Daemon* HttpServer::start_daemon(int listen_fd, const WebSecurity& security,
                                     const std::string& address) {
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
        static int headers_seen;
        if (*request_state == nullptr) {
            *request_state = &headers_seen;
            return MHD_YES;
        }
        if (*upload_data_size != 0) {
            *upload_data_size = 0;  // a request body: nothing here reads one
            return MHD_YES;
        }
        return static_cast<HttpServer*>(self)->answer(connection, method, url) ? MHD_YES : MHD_NO;
    };

    // MHD owns the socket from here on: it closes it when stopped and also when it fails to
    // start (checked with 0.9.75). MHD_USE_ITC makes MHD_quiesce_daemon possible.
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    std::vector<MHD_OptionItem> items = {
        {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(log_callback), this},
        {MHD_OPTION_LISTEN_SOCKET, listen_fd, nullptr},
        {MHD_OPTION_THREAD_POOL_SIZE, max_threads_, nullptr},
        {MHD_OPTION_CONNECTION_LIMIT, kConnectionLimit, nullptr},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, kPerAddressLimit, nullptr},
        {MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutSeconds, nullptr},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, nullptr},
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
        MHD_NotifyConnectionCallback notify = configure_client_auth;
        items.push_back(
            {MHD_OPTION_NOTIFY_CONNECTION, reinterpret_cast<intptr_t>(notify),
             const_cast<ClientAuth*>(&kClientAuths[static_cast<size_t>(tls.client_auth)])});
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
                        address + "\": libmicrohttpd failed to start" +
                        (startup_log_.empty() ? "" : ": " + startup_log_));
    }
    return daemon;
}

void HttpServer::set_security(const WebSecurity& security) {
    auto next = std::make_shared<const WebSecurity>(security);
    std::shared_ptr<const WebSecurity> running;
    {
        std::lock_guard lock(security_mutex_);
        running = security_;
    }
    if (next->tls == running->tls) {
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
                throw HttpError("cannot restart the HTTP server on \"" + addresses_[i] +
                                "\": cannot duplicate its listening socket");
            started.emplace_back(start_daemon(fd, *next, addresses_[i]));
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

bool HttpServer::authorized(MHD_Connection* connection) {
    std::shared_ptr<const WebSecurity> security;
    {
        std::lock_guard lock(security_mutex_);
        security = security_;
    }
    const auto& users = security->basic_auth_users;
    if (users.empty()) return true;
    char* password = nullptr;
    char* user = MHD_basic_auth_get_username_password(connection, &password);
    const bool given = user != nullptr;
    const std::string name = given ? user : "";
    const std::string secret = password == nullptr ? "" : password;
    MHD_free(user);
    MHD_free(password);
    if (!given) return false;
    const auto found = users.find(name);
    const bool matches = bcrypt_matches(secret, found == users.end() ? kDummyHash : found->second);
    return matches && found != users.end();
}

bool HttpServer::answer(MHD_Connection* connection, const char* method, const char* url) {
    // Every path needs the credentials when users are configured, as in exporter-toolkit:
    // even /-/healthy tells an attacker the daemon exists and runs.
    if (!authorized(connection)) {
        static const char kBody[] = "Unauthorized\n";
        MHD_Response* reply = MHD_create_response_from_buffer(
            sizeof kBody - 1, const_cast<char*>(kBody), MHD_RESPMEM_PERSISTENT);
        if (reply == nullptr) return false;
        const bool queued =
            MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    "text/plain; charset=utf-8") == MHD_YES &&
            MHD_queue_basic_auth_fail_response(connection, "tcpstatesd", reply) == MHD_YES;
        MHD_destroy_response(reply);
        return queued;
    }
    Response response;
    try {
        response = respond(method, url,
                           MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_ACCEPT_ENCODING));
    } catch (const std::exception& e) {
        spdlog::error("HTTP {} {}: {}", method, url, e.what());
        response = Response{500, "text/plain; charset=utf-8", "Internal Server Error\n", {}};
    } catch (...) {
        spdlog::error("HTTP {} {}: unknown exception", method, url);
        response = Response{500, "text/plain; charset=utf-8", "Internal Server Error\n", {}};
    }
    // MHD sends the body from our buffer without copying, frees it through the callback and
    // adds Content-Length itself; for HEAD it sends the headers alone.
    auto body = std::make_unique<std::string>(std::move(response.body));
    MHD_Response* reply = MHD_create_response_from_buffer_with_free_callback_cls(
        body->size(), body->data(), [](void* text) { delete static_cast<std::string*>(text); },
        body.get());
    if (reply == nullptr) {
        return false;  // out of memory: MHD closes the connection
    }
    (void)body.release();  // libmicrohttpd owns it now and frees it through the callback
    bool headers_added = MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE,
                                                 response.content_type.c_str()) == MHD_YES;
    for (const auto& [name, value] : response.headers) {
        headers_added =
            headers_added && MHD_add_response_header(reply, name.c_str(), value.c_str()) == MHD_YES;
    }
    const bool queued =
        headers_added &&
        MHD_queue_response(connection, static_cast<unsigned>(response.status), reply) == MHD_YES;
    MHD_destroy_response(reply);
    return queued;
}

HttpServer::Response HttpServer::respond(const std::string& method, const std::string& path,
                                         const char* accept_encoding) {
    const bool known =
        path == telemetry_path_ || path == "/" || path == "/-/healthy" || path == "/-/ready";
    if (!known) {
        return {404, "text/plain; charset=utf-8", "Not Found\n", {}};
    }
    if (method != "GET" && method != "HEAD") {
        return {405, "text/plain; charset=utf-8", "Method Not Allowed\n", {{"Allow", "GET, HEAD"}}};
    }
    if (path == telemetry_path_) {
        return scrape(accepts_gzip(accept_encoding));
    }
    if (path == "/-/healthy") {
        return healthy_() ? Response{200, "text/plain; charset=utf-8", "OK\n", {}}
                          : Response{503, "text/plain; charset=utf-8", "Service Unavailable\n", {}};
    }
    if (path == "/-/ready") {
        return ready_() ? Response{200, "text/plain; charset=utf-8", "OK\n", {}}
                        : Response{503, "text/plain; charset=utf-8", "Service Unavailable\n", {}};
    }
    const std::string link = html_escape(telemetry_path_);
    return {200,
            "text/html; charset=utf-8",
            "<!DOCTYPE html>\n<html>\n<head><title>tcpstatesd</title></head>\n<body>\n"
            "<h1>tcpstatesd</h1>\n<p>TCP state transitions as Prometheus metrics. Version " +
                std::string(kVersion) + " (" + kGitRevision + ").</p>\n<p><a href=\"" + link +
                "\">Metrics</a></p>\n</body>\n</html>\n",
            {}};
}

HttpServer::Response HttpServer::scrape(bool use_gzip) {
    const auto start = std::chrono::steady_clock::now();
    // Each Collect() copies the values out under prometheus-cpp's own short locks; the
    // serialization and compression below work on that copy, holding nothing.
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    for (const auto& collectable : collectables_) {
        auto more = collectable->Collect();
        families.insert(families.end(), std::make_move_iterator(more.begin()),
                        std::make_move_iterator(more.end()));
    }
    Response response{200,
                      kExpositionContentType,
                      prometheus::TextSerializer().Serialize(families),
                      {{"Vary", "Accept-Encoding"}}};
    if (use_gzip) {
        response.body = gzip(response.body);
        response.headers.emplace_back("Content-Encoding", "gzip");
    }
    scrapes_->Increment();
    scrape_duration_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return response;
}

}  // namespace tcpstatesd

#include "http_server.hpp"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <mutex>
#include <system_error>
#include <thread>

#include "version.hpp"

namespace tcpstatesd {

namespace {

// civetweb reads at most this much request line + headers; larger requests get 400.
constexpr const char* kMaxRequestSize = "16384";
// A client that has not sent a complete request within this time is dropped, so slow clients
// cannot hold the bounded worker threads for long.
constexpr const char* kRequestTimeoutMs = "10000";
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
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
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
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
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

// Opens and at once closes a connection to host:port, to wake a poll() on that listener.
void wake(const std::string& host, uint16_t port) {
    sockaddr_storage address{};
    socklen_t length = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        length = sizeof *v4;
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        length = sizeof *v6;
    } else {
        return;
    }
    const int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        (void)connect(fd, reinterpret_cast<sockaddr*>(&address), length);
        close(fd);
    }
}

// The address to connect to in order to reach a listener bound as `address`.
std::string wake_host(const std::string& address) {
    const std::string host = address.substr(0, address.rfind(':'));
    if (host.empty() || host == "0.0.0.0") {
        return "127.0.0.1";
    }
    if (host == "[::]") {
        return "::1";
    }
    return host.front() == '[' ? host.substr(1, host.size() - 2) : host;
}

}  // namespace

std::string civetweb_listen_spec(const std::string& address, bool ipv6_available) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos || !is_decimal_port(std::string_view(address).substr(colon + 1))) {
        throw HttpError("invalid listen address \"" + address +
                        "\": expected host:port, [ipv6]:port or :port with a port 0-65535");
    }
    const std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (host.empty()) {
        // civetweb: "+port" is one dual-stack IPv6 socket (IPV6_V6ONLY off), "port" binds
        // 0.0.0.0 only.
        return (ipv6_available ? "+" : "") + port;
    }
    if (host.find_first_of("[]") != std::string::npos && !bracketed) {
        throw HttpError("invalid listen address \"" + address +
                        "\": an IPv6 address must be written in brackets, e.g. [::1]:9977");
    }
    if (bracketed && !ipv6_available) {
        throw HttpError("cannot listen on \"" + address +
                        "\": the civetweb library in use was built without IPv6 support "
                        "(mg_check_feature(8) is 0); use an IPv4 address or \":port\"");
    }
    if (!bracketed && host.find(':') != std::string::npos) {
        throw HttpError("invalid listen address \"" + address +
                        "\": an IPv6 address must be written in brackets, e.g. [::1]:9977");
    }
    in6_addr parsed{};
    const std::string literal = bracketed ? host.substr(1, host.size() - 2) : host;
    if (inet_pton(bracketed ? AF_INET6 : AF_INET, literal.c_str(), &parsed) != 1) {
        throw HttpError("invalid listen address \"" + address +
                        "\": the host must be an IP address (e.g. 127.0.0.1 or [::1]), not a name");
    }
    return address;
}

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
      ready_(std::move(ready)) {
    if (telemetry_path_.empty() || telemetry_path_.front() != '/' || telemetry_path_ == "/" ||
        telemetry_path_ == "/-/healthy" || telemetry_path_ == "/-/ready") {
        throw HttpError("invalid telemetry path \"" + telemetry_path_ +
                        "\": it must start with '/' and not be /, /-/healthy or /-/ready");
    }
    if (options.listen_addresses.empty()) {
        throw HttpError("no listen address given");
    }
    if (options.max_threads == 0) {
        throw HttpError("max_threads must be at least 1");
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
             .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005,
                                                               0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5, 1});

    const bool ipv6 = mg_check_feature(8) != 0;
    std::string ports;
    std::string addresses;
    for (const auto& address : options.listen_addresses) {
        ports += (ports.empty() ? "" : ",") + civetweb_listen_spec(address, ipv6);
        addresses += (addresses.empty() ? "\"" : ", \"") + address + "\"";
        wake_hosts_.push_back(wake_host(address));
    }
    const std::string threads = std::to_string(options.max_threads);
    const char* civetweb_options[] = {
        "listening_ports", ports.c_str(),
        "num_threads", threads.c_str(),
        "request_timeout_ms", kRequestTimeoutMs,
        "max_request_size", kMaxRequestSize,
        "enable_keep_alive", "no",
        // No document_root: civetweb serves no files; every request goes to handle_request.
        nullptr,
    };

    mg_callbacks callbacks{};
    callbacks.begin_request = &HttpServer::handle_request;
    callbacks.log_message = &HttpServer::log_message;

    mg_init_data init{&callbacks, this, civetweb_options};
    char error_text[256] = "";
    mg_error_data error{nullptr, error_text, sizeof error_text};
    mg_init_library(0);
    context_ = mg_start2(&init, &error);
    if (context_ == nullptr) {
        mg_exit_library();
        std::string detail;
        for (const auto& message : startup_messages_) {
            if (message != error_text) {
                detail += (detail.empty() ? "" : "; ") + message;
            }
        }
        throw HttpError("HTTP server cannot listen on " + addresses + ": " +
                        (detail.empty() ? error_text : detail));
    }
    {
        std::lock_guard lock(log_mutex_);
        starting_ = false;
        startup_messages_.clear();
    }
    spdlog::info("HTTP server listening on {} (telemetry path {})", addresses, telemetry_path_);
}

HttpServer::~HttpServer() {
    // civetweb's accept loop looks at its stop flag only between polls of up to 2 s
    // (SOCKET_TIMEOUT_QUANTUM, fixed at build time). Connecting to each listener while
    // mg_stop() waits wakes that poll, so stopping takes milliseconds rather than seconds.
    const auto ports = bound_ports();
    std::atomic<bool> stopped{false};
    try {
        std::thread stopper([this, &stopped] {
            mg_stop(context_);
            stopped = true;
        });
        while (!stopped) {
            for (size_t i = 0; i < ports.size() && i < wake_hosts_.size(); ++i) {
                wake(wake_hosts_[i], ports[i]);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        stopper.join();
    } catch (const std::system_error&) {
        mg_stop(context_);  // no thread to spare: stop the slow way
    }
    mg_exit_library();
}

std::vector<uint16_t> HttpServer::bound_ports() const {
    // civetweb opens one socket per listen address (a dual-stack "+port" is one socket).
    std::vector<mg_server_port> ports(wake_hosts_.size());
    const int count = mg_get_server_ports(context_, static_cast<int>(ports.size()), ports.data());
    std::vector<uint16_t> result;
    for (int i = 0; i < count; ++i) {
        result.push_back(static_cast<uint16_t>(ports[static_cast<size_t>(i)].port));
    }
    return result;
}

int HttpServer::log_message(const mg_connection* conn, const char* message) {
    spdlog::debug("civetweb: {}", message);
    const mg_context* context = conn ? mg_get_context(conn) : nullptr;
    if (auto* self = context ? static_cast<HttpServer*>(mg_get_user_data(context)) : nullptr) {
        std::lock_guard lock(self->log_mutex_);
        if (self->starting_) {
            self->startup_messages_.emplace_back(message);
        }
    }
    return 1;  // handled: civetweb writes no log of its own
}

int HttpServer::handle_request(mg_connection* conn) {
    const mg_request_info* request = mg_get_request_info(conn);
    auto* self = static_cast<HttpServer*>(request->user_data);
    const std::string method = request->request_method ? request->request_method : "";
    Response response;
    try {
        response = self->respond(method, request->local_uri ? request->local_uri : "",
                                 mg_get_header(conn, "Accept-Encoding"));
    } catch (const std::exception& e) {
        spdlog::error("HTTP {} {}: {}", method, request->local_uri ? request->local_uri : "",
                      e.what());
        response = Response{500, "text/plain; charset=utf-8", "Internal Server Error\n", {}};
    } catch (...) {
        spdlog::error("HTTP {}: unknown exception", method);
        response = Response{500, "text/plain; charset=utf-8", "Internal Server Error\n", {}};
    }

    mg_response_header_start(conn, response.status);
    mg_response_header_add(conn, "Content-Type", response.content_type.c_str(), -1);
    mg_response_header_add(conn, "Content-Length", std::to_string(response.body.size()).c_str(),
                           -1);
    for (const auto& [name, value] : response.headers) {
        mg_response_header_add(conn, name.c_str(), value.c_str(), -1);
    }
    mg_response_header_send(conn);
    if (method != "HEAD") {
        mg_write(conn, response.body.data(), response.body.size());
    }
    return response.status;
}

HttpServer::Response HttpServer::respond(const std::string& method, const std::string& path,
                                         const char* accept_encoding) {
    const bool known = path == telemetry_path_ || path == "/" || path == "/-/healthy" ||
                       path == "/-/ready";
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
    return {200, "text/html; charset=utf-8",
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
    Response response{200, kExpositionContentType, prometheus::TextSerializer().Serialize(families),
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

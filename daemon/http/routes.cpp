#include "http/routes.hpp"

#include <microhttpd.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/access_policy.hpp"
#include "http/content_encoding.hpp"
#include "version.hpp"

namespace tcpstatesd {

namespace {

constexpr const char* kPlainText = "text/plain; charset=utf-8";

Response plain(int status, std::string text,
               std::vector<std::pair<std::string, std::string>> headers = {}) {
    return {status, kPlainText, std::make_shared<const std::string>(std::move(text)),
            std::move(headers)};
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

Response landing_page(const std::string& telemetry_path) {
    const std::string link = html_escape(telemetry_path);
    return {200,
            "text/html; charset=utf-8",
            std::make_shared<const std::string>(
                "<!DOCTYPE html>\n<html>\n<head><title>tcpstatesd</title></head>\n<body>\n"
                "<h1>tcpstatesd</h1>\n<p>TCP state transitions as Prometheus metrics. Version " +
                std::string(kVersion) + " (" + kGitRevision + ").</p>\n<p><a href=\"" + link +
                "\">Metrics</a></p>\n</body>\n</html>\n"),
            {}};
}

Response status_page(bool ok) {
    return ok ? plain(200, "OK\n") : plain(503, "Service Unavailable\n");
}

// The request's headers a route depends on (nullptr when absent).
struct RequestHeaders {
    const char* accept;
    const char* accept_encoding;
};

Response route(const Routes& routes, const std::string& method, const std::string& path,
               const RequestHeaders& headers) {
    const bool known =
        path == routes.telemetry_path || path == "/" || path == "/-/healthy" || path == "/-/ready";
    if (!known) {
        return plain(404, "Not Found\n");
    }
    if (method != "GET" && method != "HEAD") {
        return plain(405, "Method Not Allowed\n", {{"Allow", "GET, HEAD"}});
    }
    if (path == routes.telemetry_path) {
        return routes.scrape(negotiate_format(headers.accept),
                             accepts_gzip(headers.accept_encoding));
    }
    if (path == "/-/healthy") {
        return status_page(routes.healthy());
    }
    if (path == "/-/ready") {
        return status_page(routes.ready());
    }
    return landing_page(routes.telemetry_path);
}

// No exception crosses into libmicrohttpd: a failing callback is a 500 and a log line.
Response route_or_500(const Routes& routes, const char* method, const char* url,
                      const RequestHeaders& headers) {
    try {
        return route(routes, method, url, headers);
    } catch (const std::exception& e) {
        spdlog::error("HTTP {} {}: {}", method, url, e.what());
    } catch (...) {
        spdlog::error("HTTP {} {}: unknown exception", method, url);
    }
    return plain(500, "Internal Server Error\n");
}

bool queue_unauthorized(MHD_Connection* connection) {
    static const char kBody[] = "Unauthorized\n";
    MHD_Response* reply = MHD_create_response_from_buffer(
        sizeof kBody - 1, const_cast<char*>(kBody), MHD_RESPMEM_PERSISTENT);
    if (reply == nullptr) return false;
    const bool queued =
        MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE, kPlainText) == MHD_YES &&
        MHD_queue_basic_auth_fail_response(connection, "tcpstatesd", reply) == MHD_YES;
    MHD_destroy_response(reply);
    return queued;
}

bool queue(MHD_Connection* connection, const Response& response) {
    // MHD sends the body from the shared text without copying, lets go of its reference
    // through the callback and adds Content-Length itself; for HEAD it sends the headers alone.
    using Body = std::shared_ptr<const std::string>;
    auto reference = std::make_unique<Body>(response.body);
    MHD_Response* reply = MHD_create_response_from_buffer_with_free_callback_cls(
        response.body->size(), const_cast<char*>(response.body->data()),
        [](void* held) { delete static_cast<Body*>(held); }, reference.get());
    if (reply == nullptr) {
        return false;  // out of memory: MHD closes the connection
    }
    (void)reference.release();  // libmicrohttpd holds it now and drops it through the callback
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

}  // namespace

bool answer(MHD_Connection* connection, const char* method, const char* url, const Routes& routes,
            const WebSecurity& security) {
    if (!basic_auth_passes(connection, security.basic_auth_users)) {
        return queue_unauthorized(connection);
    }
    const RequestHeaders headers{
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT),
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING)};
    return queue(connection, route_or_500(routes, method, url, headers));
}

bool answer_bad_request(MHD_Connection* connection, const std::string& why) {
    // Closed afterwards: where the next request would start is not known for sure.
    return queue(connection, plain(400, "Bad Request: " + why + "\n", {{"Connection", "close"}}));
}

}  // namespace tcpstatesd

// What each path of the HTTP endpoint answers: the telemetry path, /-/healthy, /-/ready, the
// landing page, 404 and 405; and handing the answer to libmicrohttpd.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/web_config.hpp"
#include "exposition/exposition_format.hpp"

struct MHD_Connection;

namespace tcpstatesd {

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    // Shared: a telemetry body is sent to every scrape that shares it (shared_bodies.hpp)
    // and lives until the last connection sending it lets go.
    std::shared_ptr<const std::string> body;
    std::vector<std::pair<std::string, std::string>> headers;
};

// The endpoint's content. The callbacks run on the server's threads, concurrently.
struct Routes {
    std::string telemetry_path;  // validated by the configuration (validate_telemetry_path)
    // The telemetry in the format the request's Accept header prefers, gzipped when its
    // Accept-Encoding allows.
    std::function<Response(ExpositionFormat format, bool gzip)> scrape;
    std::function<bool()> healthy;
    std::function<bool()> ready;
};

// Answers one complete request on `connection`: 401 unless the security's basic auth passes
// (on every path, as in exporter-toolkit: even /-/healthy tells an attacker the daemon runs),
// else what `routes` has for the path; 500 when a callback throws. False when libmicrohttpd
// should drop the connection.
bool answer(MHD_Connection* connection, const char* method, const char* url, const Routes& routes,
            const WebSecurity& security);

// Answers 400 Bad Request saying `why` and closes the connection afterwards: a request the
// server cannot read unambiguously (two lengths, a NUL in the path), whatever its path.
bool answer_bad_request(MHD_Connection* connection, const std::string& why);

}  // namespace tcpstatesd

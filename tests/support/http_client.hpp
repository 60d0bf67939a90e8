// A deliberately raw HTTP/1.1 client for tests: it sends exactly the bytes it is given (so
// malformed and oversized requests can be sent) and reads the reply until the server closes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace tcpstatesd::test {

struct HttpReply {
    int status = 0;  // 0: the connection closed (or was reset) before a status line arrived
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;

    std::string header(const std::string& lower_case_name) const;
};

// A TCP connection to `host` (IPv4 or IPv6 literal), from `source` when not empty (e.g. a
// second loopback address); 15 s receive/send timeouts. Throws std::runtime_error when it
// cannot connect. The caller closes the returned descriptor.
int connect_to(const std::string& host, uint16_t port, const std::string& source = "");

// Sends `request` verbatim on a connected socket and returns everything the server sent
// until it closed the connection, reset it, or 15 s passed.
std::string send_and_read(int fd, std::string_view request);

// Connects to `host` (IPv4 or IPv6 literal), sends `request` verbatim, returns everything the
// server sent until it closed the connection, reset it, or 15 s passed. Throws
// std::runtime_error when it cannot connect.
std::string exchange(const std::string& host, uint16_t port, std::string_view request);

// Splits a raw reply into status, headers and body (no chunked encoding: the server under
// test always sends Content-Length).
HttpReply parse_reply(const std::string& raw);

// A well-formed request: `method path HTTP/1.1` with Host, Connection: close and `headers`
// (each "Name: value\r\n").
HttpReply request(const std::string& host, uint16_t port, const std::string& method,
                  const std::string& path, const std::string& headers = "");

// Inflates a gzip body; throws std::runtime_error when it is not valid gzip.
std::string gunzip(const std::string& data);

}  // namespace tcpstatesd::test

#include "http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "common/fd.hpp"

namespace tcpstatesd::test {

namespace {

std::string lower(std::string text) {
    for (char& c : text) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return text;
}

socklen_t to_address(const std::string& host, uint16_t port, sockaddr_storage& address) {
    address = {};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    throw std::runtime_error("not an IP address: " + host);
}

}  // namespace

std::string HttpReply::header(const std::string& lower_case_name) const {
    const auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string{} : it->second;
}

int connect_to(const std::string& host, uint16_t port, const std::string& source) {
    sockaddr_storage address{};
    const socklen_t length = to_address(host, port, address);
    Fd socket_fd(socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (socket_fd.get() < 0) {
        throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    }
    const timeval timeout{15, 0};
    setsockopt(socket_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(socket_fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (!source.empty()) {
        sockaddr_storage local{};
        const socklen_t local_length = to_address(source, 0, local);
        if (bind(socket_fd.get(), reinterpret_cast<sockaddr*>(&local), local_length) != 0) {
            throw std::runtime_error("bind to " + source + ": " + std::strerror(errno));
        }
    }
    if (connect(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
        throw std::runtime_error("connect to " + host + ":" + std::to_string(port) + ": " +
                                 std::strerror(errno));
    }
    return socket_fd.release();
}

std::string send_and_read(int fd, std::string_view request) {
    // The server may answer (e.g. 413) and close before it has read all of an oversized
    // request; a failed send is then expected and the reply is still read.
    size_t sent = 0;
    while (sent < request.size()) {
        const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += static_cast<size_t>(n);
    }

    std::string reply;
    char buffer[16384];
    while (true) {
        const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
            break;  // closed, reset or timed out: the caller judges what arrived
        }
        reply.append(buffer, static_cast<size_t>(n));
    }
    return reply;
}

std::string exchange(const std::string& host, uint16_t port, std::string_view request) {
    Fd socket_fd(connect_to(host, port));
    return send_and_read(socket_fd.get(), request);
}

HttpReply parse_reply(const std::string& raw) {
    HttpReply reply;
    const auto head_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) {
        return reply;
    }
    const auto line_end = raw.find("\r\n");
    reply.status = std::stoi(raw.substr(9, 3));
    size_t position = line_end + 2;
    while (position < head_end) {
        const auto end = raw.find("\r\n", position);
        const std::string line = raw.substr(position, end - position);
        const auto colon = line.find(':');
        if (colon != std::string::npos) {
            const auto value_start = line.find_first_not_of(' ', colon + 1);
            reply.headers[lower(line.substr(0, colon))] =
                value_start == std::string::npos ? "" : line.substr(value_start);
        }
        position = end + 2;
    }
    reply.body = raw.substr(head_end + 4);
    return reply;
}

HttpReply request(const std::string& host, uint16_t port, const std::string& method,
                  const std::string& path, const std::string& headers) {
    return parse_reply(exchange(host, port,
                                method + " " + path + " HTTP/1.1\r\nHost: test\r\n" +
                                    "Connection: close\r\n" + headers + "\r\n"));
}

std::string gunzip(const std::string& data) {
    z_stream stream{};
    if (inflateInit2(&stream, 15 + 16) != Z_OK) {
        throw std::runtime_error("inflateInit2 failed");
    }
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    std::string out;
    char buffer[16384];
    int result = Z_OK;
    while (result == Z_OK) {
        stream.next_out = reinterpret_cast<Bytef*>(buffer);
        stream.avail_out = sizeof buffer;
        result = inflate(&stream, Z_NO_FLUSH);
        out.append(buffer, sizeof buffer - stream.avail_out);
    }
    inflateEnd(&stream);
    if (result != Z_STREAM_END) {
        throw std::runtime_error("not a complete gzip stream");
    }
    return out;
}

}  // namespace tcpstatesd::test

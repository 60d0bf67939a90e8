// gzip for the telemetry response, when the client's Accept-Encoding allows it.
#pragma once

#include <string>

namespace tcpstatesd {

// True when the client's Accept-Encoding header (nullptr when absent) accepts gzip.
bool accepts_gzip(const char* accept_encoding);

// `data` in the gzip format (RFC 1952); throws std::runtime_error when zlib fails.
std::string gzip(const std::string& data);

}  // namespace tcpstatesd

#include "http/content_encoding.hpp"

#include <zlib.h>

#include <cctype>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace tcpstatesd {

namespace {

std::string trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t");
    return std::string(text.substr(first, last - first + 1));
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

std::string gzip(const std::string& data) {
    z_stream stream{};
    // windowBits 15 + 16 selects the gzip wrapper rather than raw zlib. Level 1: the
    // exposition's repeated names and labels compress about as well as at the default level 6,
    // at a third of the time (1.3 MB at the series cap: docs/performance.md, "Scrapes").
    if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw std::runtime_error("zlib deflateInit2 failed");
    }
    // Ends the stream on every way out, an allocation failure below included.
    const std::unique_ptr<z_stream, decltype(&deflateEnd)> end(&stream, deflateEnd);
    std::string out(deflateBound(&stream, data.size()), '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    if (deflate(&stream, Z_FINISH) != Z_STREAM_END) {
        throw std::runtime_error("zlib deflate did not finish");
    }
    out.resize(stream.total_out);
    return out;
}

}  // namespace tcpstatesd

#include "config/port_list.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>

namespace tcpstatesd {

namespace {

uint16_t parse_port(std::string_view item, std::string_view whole) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || value == 0 ||
        value > 65535)
        throw std::invalid_argument("invalid port '" + std::string(whole) +
                                    "': ports are whole numbers from 1 to 65535");
    return static_cast<uint16_t>(value);
}

}  // namespace

std::vector<uint16_t> parse_port_list(std::string_view text) {
    std::vector<uint16_t> ports;
    if (text.empty()) throw std::invalid_argument("empty port list");
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string_view::npos) comma = text.size();
        std::string_view item = text.substr(start, comma - start);
        size_t dash = item.find('-');
        if (dash == std::string_view::npos) {
            ports.push_back(parse_port(item, item));
        } else {
            uint16_t first = parse_port(item.substr(0, dash), item);
            uint16_t last = parse_port(item.substr(dash + 1), item);
            if (first > last)
                throw std::invalid_argument("invalid port range '" + std::string(item) +
                                            "': the first port is above the last");
            for (unsigned p = first; p <= last; ++p) ports.push_back(static_cast<uint16_t>(p));
        }
        start = comma + 1;
    }
    std::sort(ports.begin(), ports.end());
    ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
    return ports;
}

}  // namespace tcpstatesd

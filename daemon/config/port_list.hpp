// Port lists as people write them: "80,443,8000-8010".
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tcpstatesd {

// Parses a comma-separated list of ports and inclusive ranges (1..65535) into a sorted list
// without duplicates. Throws std::invalid_argument naming the offending item.
std::vector<uint16_t> parse_port_list(std::string_view text);

}  // namespace tcpstatesd

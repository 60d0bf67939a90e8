// Names of the kernel's TCP states and address families, as they appear in trace output
// and in metric labels.
#pragma once

#include <cstdint>
#include <string_view>

namespace tcpstatesd {

// Kernel state numbers (include/net/tcp_states.h) run from TCP_ESTABLISHED = 1 to
// TCP_BOUND_INACTIVE = 13; anything else is reported as "UNKNOWN".
constexpr unsigned kMaxTcpState = 13;
constexpr unsigned kTcpClose = 7;

// "ESTABLISHED", "SYN_SENT", ... ("UNKNOWN" outside 1..kMaxTcpState).
std::string_view tcp_state_name(unsigned state);
// "ipv4", "ipv6", or "unknown".
std::string_view family_name(unsigned family);

}  // namespace tcpstatesd

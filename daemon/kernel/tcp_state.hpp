// Names of the kernel's TCP states (enum tcpstates_tcp_state in bpf/tcpstates.h) and address
// families, as they appear in trace output and in metric labels.
#pragma once

#include <string_view>

#include "tcpstates.h"

namespace tcpstatesd {

// "ESTABLISHED", "SYN_SENT", ... ("UNKNOWN" outside 1..TCPSTATES_MAX_STATE).
std::string_view tcp_state_name(unsigned state);
// "ipv4", "ipv6", or "unknown".
std::string_view family_name(unsigned family);

}  // namespace tcpstatesd

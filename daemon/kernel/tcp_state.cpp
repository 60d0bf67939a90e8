#include "kernel/tcp_state.hpp"

#include <sys/socket.h>

#include <iterator>

namespace tcpstatesd {

namespace {

// Each state's name, indexed by the state (enum tcpstates_tcp_state); 0 is none.
constexpr std::string_view kTcpStateNames[] = {
    "UNKNOWN",   "ESTABLISHED", "SYN_SENT",     "SYN_RECV",      "FIN_WAIT1",
    "FIN_WAIT2", "TIME_WAIT",   "CLOSE",        "CLOSE_WAIT",    "LAST_ACK",
    "LISTEN",    "CLOSING",     "NEW_SYN_RECV", "BOUND_INACTIVE"};
static_assert(std::size(kTcpStateNames) == TCPSTATES_MAX_STATE + 1);

}  // namespace

std::string_view tcp_state_name(unsigned state) {
    return state < std::size(kTcpStateNames) ? kTcpStateNames[state] : kTcpStateNames[0];
}

std::string_view family_name(unsigned family) {
    switch (family) {
        case AF_INET:
            return "ipv4";
        case AF_INET6:
            return "ipv6";
        default:
            return "unknown";
    }
}

}  // namespace tcpstatesd

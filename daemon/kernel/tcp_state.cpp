#include "kernel/tcp_state.hpp"

#include <sys/socket.h>

namespace tcpstatesd {

std::string_view tcp_state_name(unsigned state) {
    static constexpr std::string_view kNames[kMaxTcpState + 1] = {
        "UNKNOWN",   "ESTABLISHED", "SYN_SENT",     "SYN_RECV",       "FIN_WAIT1",
        "FIN_WAIT2", "TIME_WAIT",   "CLOSE",        "CLOSE_WAIT",     "LAST_ACK",
        "LISTEN",    "CLOSING",     "NEW_SYN_RECV", "BOUND_INACTIVE",
    };
    return state <= kMaxTcpState ? kNames[state] : kNames[0];
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

#include "kernel/tcp_state.hpp"

#include <sys/socket.h>

namespace tcpstatesd {

std::string_view tcp_state_name(unsigned state) {
    switch (state) {
        case TCPSTATES_ESTABLISHED:
            return "ESTABLISHED";
        case TCPSTATES_SYN_SENT:
            return "SYN_SENT";
        case TCPSTATES_SYN_RECV:
            return "SYN_RECV";
        case TCPSTATES_FIN_WAIT1:
            return "FIN_WAIT1";
        case TCPSTATES_FIN_WAIT2:
            return "FIN_WAIT2";
        case TCPSTATES_TIME_WAIT:
            return "TIME_WAIT";
        case TCPSTATES_CLOSE:
            return "CLOSE";
        case TCPSTATES_CLOSE_WAIT:
            return "CLOSE_WAIT";
        case TCPSTATES_LAST_ACK:
            return "LAST_ACK";
        case TCPSTATES_LISTEN:
            return "LISTEN";
        case TCPSTATES_CLOSING:
            return "CLOSING";
        case TCPSTATES_NEW_SYN_RECV:
            return "NEW_SYN_RECV";
        case TCPSTATES_BOUND_INACTIVE:
            return "BOUND_INACTIVE";
        default:
            return "UNKNOWN";
    }
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

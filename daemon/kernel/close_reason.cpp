#include "kernel/close_reason.hpp"

#include <cerrno>

#include "tcpstates.h"

namespace tcpstatesd {

CloseReason close_reason(unsigned from_state, unsigned error) {
    switch (error) {
        case 0:
            break;
        case ECONNREFUSED:  // a RST in answer to the SYN, or ICMP port unreachable
            return CloseReason::Refused;
        case ETIMEDOUT:  // retransmissions (SYN, data, FIN) or keepalive probes unanswered
            return CloseReason::Timeout;
        case ECONNRESET:  // a RST received
        case EPIPE:       // a RST received in CLOSE_WAIT
            return CloseReason::Reset;
        // What ICMP destination-unreachable codes become (icmp_err_convert, icmpv6_err_convert):
        // no route, host unknown or isolated, administratively prohibited.
        case ENETUNREACH:
        case EHOSTUNREACH:
        case EHOSTDOWN:
        case ENETDOWN:
        case ENONET:
        case EACCES:
            return CloseReason::Unreachable;
        default:
            return CloseReason::Other;
    }
    switch (from_state) {
        // The application closed the socket before the handshake completed.
        case TCPSTATES_SYN_SENT:
        case TCPSTATES_SYN_RECV:
            return CloseReason::Canceled;
        // Without an error, the kernel leaves these states for CLOSE only by aborting the
        // connection, and then sends a RST: close() with unread data or SO_LINGER 0, a
        // listener's close() for the children not yet accepted, shutdown by memory pressure.
        // The error is set after the move to CLOSE, if at all.
        case TCPSTATES_ESTABLISHED:
        case TCPSTATES_CLOSE_WAIT:
        case TCPSTATES_FIN_WAIT1:
            return CloseReason::Reset;
        // The end of an orderly close (FIN_WAIT2, LAST_ACK, CLOSING), a listener's close().
        default:
            return CloseReason::Normal;
    }
}

std::string_view close_reason_name(CloseReason reason) {
    switch (reason) {
        case CloseReason::Normal:
            return "normal";
        case CloseReason::Refused:
            return "refused";
        case CloseReason::Timeout:
            return "timeout";
        case CloseReason::Reset:
            return "reset";
        case CloseReason::Unreachable:
            return "unreachable";
        case CloseReason::Canceled:
            return "canceled";
        case CloseReason::Other:
            return "other";
    }
    return "other";
}

}  // namespace tcpstatesd

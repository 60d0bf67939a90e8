// Why a socket closed (the `reason` of tcpstates_closes_total, and trace's), read from what the
// kernel leaves on the socket at its transition to CLOSE: its pending error (sk_err), the
// state it leaves and whether the programs saw the kernel abort it. The mapping is
// tcpstates_close_reason() in bpf/tcpstates.h, which the programs run; docs/metrics.md, "Close
// reasons", is the table.
#pragma once

#include <iterator>
#include <string_view>

#include "tcpstates.h"

namespace tcpstatesd {

enum class CloseReason {
    Normal = TCPSTATES_CLOSE_NORMAL,
    Refused = TCPSTATES_CLOSE_REFUSED,
    Timeout = TCPSTATES_CLOSE_TIMEOUT,
    Reset = TCPSTATES_CLOSE_RESET,
    Unreachable = TCPSTATES_CLOSE_UNREACHABLE,
    Canceled = TCPSTATES_CLOSE_CANCELED,
    Other = TCPSTATES_CLOSE_OTHER,
    Aborted = TCPSTATES_CLOSE_ABORTED,
};

// Each reason's name, indexed by the reason.
inline constexpr std::string_view kCloseReasonNames[] = {
    "normal", "refused", "timeout", "reset", "unreachable", "canceled", "other", "aborted"};
static_assert(std::size(kCloseReasonNames) == TCPSTATES_CLOSE_REASONS);

// `from_state`: enum tcpstates_tcp_state; `error`: the socket's pending error (an errno, 0:
// none); `aborted`: the programs saw the kernel abort it (TCPSTATES_EVENT_ABORTED).
inline CloseReason close_reason(unsigned from_state, unsigned error, bool aborted = false) {
    return CloseReason(tcpstates_close_reason(from_state, error, aborted ? 1 : 0));
}
// "normal", "refused", ...
inline std::string_view close_reason_name(CloseReason reason) {
    return kCloseReasonNames[static_cast<size_t>(reason)];
}

}  // namespace tcpstatesd

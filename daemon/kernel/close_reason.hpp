// Why a socket closed (the `reason` of tcpstates_closes_total, and trace's), read from what the
// kernel leaves on the socket at its transition to CLOSE: its pending error (sk_err) and the
// state it leaves. docs/metrics.md, "Close reasons", is the table.
#pragma once

#include <string_view>

namespace tcpstatesd {

enum class CloseReason { Normal, Refused, Timeout, Reset, Unreachable, Canceled, Other };
constexpr CloseReason kCloseReasons[] = {
    CloseReason::Normal,      CloseReason::Refused,  CloseReason::Timeout, CloseReason::Reset,
    CloseReason::Unreachable, CloseReason::Canceled, CloseReason::Other};

// `from_state`: enum tcpstates_tcp_state; `error`: the record's close_error (an errno, 0: none).
CloseReason close_reason(unsigned from_state, unsigned error);
// "normal", "refused", ...
std::string_view close_reason_name(CloseReason reason);

}  // namespace tcpstatesd

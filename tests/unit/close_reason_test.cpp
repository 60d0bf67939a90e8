#include "kernel/close_reason.hpp"

#include <catch2/catch.hpp>
#include <cerrno>

#include "kernel/event_losses.hpp"
#include "kernel/tcp_state.hpp"
#include "tcpstates.h"

using tcpstatesd::close_reason;
using tcpstatesd::close_reason_name;
using tcpstatesd::CloseReason;

TEST_CASE("close reason: the socket's pending error says why, whatever the state it leaves") {
    for (unsigned from : {TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED, TCPSTATES_LAST_ACK}) {
        CHECK(close_reason(from, ECONNREFUSED) == CloseReason::Refused);
        CHECK(close_reason(from, ETIMEDOUT) == CloseReason::Timeout);
        CHECK(close_reason(from, ECONNRESET) == CloseReason::Reset);
        CHECK(close_reason(from, EPIPE) == CloseReason::Reset);
        for (int unreachable : {ENETUNREACH, EHOSTUNREACH, EHOSTDOWN, ENETDOWN, ENONET, EACCES})
            CHECK(close_reason(from, unreachable) == CloseReason::Unreachable);
        CHECK(close_reason(from, EMSGSIZE) == CloseReason::Other);
        // tcp_abort(): ss -K, SOCK_DESTROY.
        CHECK(close_reason(from, ECONNABORTED) == CloseReason::Aborted);
        // An error wins over an abort's RST seen before (the keepalive timeout sends one).
        CHECK(close_reason(from, ETIMEDOUT, true) == CloseReason::Timeout);
    }
}

TEST_CASE("close reason: without an error, the state left tells a cancel, an abort and an end") {
    CHECK(close_reason(TCPSTATES_SYN_SENT, 0) == CloseReason::Canceled);
    // Only an abort leaves these for CLOSE without an error; a child in SYN_RECV has no
    // application yet: the kernel's (or its listener's close()).
    for (unsigned from :
         {TCPSTATES_SYN_RECV, TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_WAIT, TCPSTATES_FIN_WAIT1}) {
        CHECK(close_reason(from, 0) == CloseReason::Aborted);
        CHECK(close_reason(from, 0, true) == CloseReason::Aborted);
    }
    // The end of an orderly close, unless the programs saw the kernel abort it.
    for (unsigned from : {TCPSTATES_FIN_WAIT2, TCPSTATES_LAST_ACK, TCPSTATES_CLOSING}) {
        CHECK(close_reason(from, 0) == CloseReason::Normal);
        CHECK(close_reason(from, 0, true) == CloseReason::Aborted);
    }
    CHECK(close_reason(TCPSTATES_LISTEN, 0) == CloseReason::Normal);
}

TEST_CASE("close reason: names are the metric's label values") {
    CHECK(close_reason_name(CloseReason::Normal) == "normal");
    CHECK(close_reason_name(CloseReason::Refused) == "refused");
    CHECK(close_reason_name(CloseReason::Timeout) == "timeout");
    CHECK(close_reason_name(CloseReason::Reset) == "reset");
    CHECK(close_reason_name(CloseReason::Unreachable) == "unreachable");
    CHECK(close_reason_name(CloseReason::Canceled) == "canceled");
    CHECK(close_reason_name(CloseReason::Other) == "other");
    CHECK(close_reason_name(CloseReason::Aborted) == "aborted");
}

TEST_CASE("names: TCP states and loss reasons, UNKNOWN outside the states") {
    CHECK(tcpstatesd::tcp_state_name(TCPSTATES_ESTABLISHED) == "ESTABLISHED");
    CHECK(tcpstatesd::tcp_state_name(TCPSTATES_LISTEN) == "LISTEN");
    CHECK(tcpstatesd::tcp_state_name(TCPSTATES_BOUND_INACTIVE) == "BOUND_INACTIVE");
    CHECK(tcpstatesd::tcp_state_name(0) == "UNKNOWN");
    CHECK(tcpstatesd::tcp_state_name(TCPSTATES_MAX_STATE + 1) == "UNKNOWN");
    CHECK(tcpstatesd::loss_reason_name(tcpstatesd::LossReason::Recursion) == "recursion");
    CHECK(tcpstatesd::loss_reason_name(tcpstatesd::LossReason::PerfBufferError) == "perfbuf_error");
    CHECK(tcpstatesd::loss_reason_name(tcpstatesd::LossReason::Malformed) == "malformed");
}

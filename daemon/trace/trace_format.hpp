// Rendering of one record as a line of `tcpstatesd trace` output: columns compatible
// with libbpf-tools `tcpstates`, or one JSON object per line.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "kernel/reset_reasons.hpp"
#include "tcpstates.h"

namespace tcpstatesd {

struct TraceFormat {
    bool timestamp = false;    // -T: leading wall-clock column
    bool wide = false;         // -w: room for IPv6 addresses, plus the IP version column
    bool json = false;         // --json: one JSON object per line (other flags ignored)
    bool cgroup = false;       // --cgroup: the owner's cgroup (last column, or a JSON field)
    bool reason = false;       // --reason: the close reason column (JSON has it regardless)
    bool resets = false;       // --resets: lines for resets sent and received too
    bool retransmits = false;  // --retransmits: lines for retransmissions too
    // The running kernel's names of the reasons for sent resets (kernel/reset_reasons.hpp).
    const ResetReasons* reset_reasons = nullptr;
};

// Whether `trace` prints this record: every state transition; a reset or a retransmission
// only when asked for; never a record of a kind this build does not know.
bool trace_shows(const tcpstates_event& event, const TraceFormat& format);

// The column header line (empty for JSON), newline included.
std::string trace_header(const TraceFormat& format);
// One record, newline included. `wall_ns` is the event's time on CLOCK_REALTIME; `cgroup`
// the owner's cgroup name (printed with format.cgroup). PID and COMM are the socket's owner
// (struct tcpstates_owner); an unknown owner shows "-" (text) or null (JSON), and so does the
// duration of a transition whose start is unknown: never a made-up 0. So does SKADDR for a
// reset sent for a segment that no socket took (skaddr 0).
//
// A transition to CLOSE carries its close reason (close_reason_name()), a reset sent the
// kernel's reason for it (format.reset_reasons' name, "other" for a value it does not name):
// the REASON column after NEWSTATE with format.reason ("-" on other lines), and in JSON always a
// "reason" field, absent from other lines (it does not apply there; lines without it stay as
// before).
//
// A reset or retransmission takes the OLDSTATE -> NEWSTATE columns as "RST_SENT in STATE",
// "RST_RECV in STATE" or "RETRANS in STATE" (the socket's state then; as many words as a
// transition, the columns aligned) and MS "-". In JSON it has "event" ("reset_sent",
// "reset_received", "retransmit") and "state" instead of the two states and duration_ms; a
// transition has "event": "transition" when format.resets or format.retransmits mixes kinds
// in the output, and no "event" otherwise (its line as before).
std::string trace_line(const tcpstates_event& event, const TraceFormat& format, int64_t wall_ns,
                       std::string_view cgroup = {});

// "127.0.0.1" or "::1" from an event's address bytes.
std::string format_address(unsigned family, const uint8_t (&address)[16]);

}  // namespace tcpstatesd

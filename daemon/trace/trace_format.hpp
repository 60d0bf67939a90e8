// Rendering of one transition as a line of `tcpstatesd trace` output: columns compatible
// with libbpf-tools `tcpstates`, or one JSON object per line.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "tcpstates.h"

namespace tcpstatesd {

struct TraceFormat {
    bool timestamp = false;  // -T: leading wall-clock column
    bool wide = false;       // -w: room for IPv6 addresses, plus the IP version column
    bool json = false;       // --json: one JSON object per line (other flags ignored)
    bool cgroup = false;     // --cgroup: the owner's cgroup (last column, or a JSON field)
};

// The column header line (empty for JSON), newline included.
std::string trace_header(const TraceFormat& format);
// One transition, newline included. `wall_ns` is the event's time on CLOCK_REALTIME; `cgroup`
// the owner's cgroup name (printed with format.cgroup). PID and COMM are the socket's owner
// (struct tcpstates_owner); an unknown owner shows "-" (text) or null (JSON), and so does the
// duration of a transition whose start is unknown: never a made-up 0.
std::string trace_line(const tcpstates_event& event, const TraceFormat& format, int64_t wall_ns,
                       std::string_view cgroup = {});

// "127.0.0.1" or "::1" from an event's address bytes.
std::string format_address(unsigned family, const uint8_t (&address)[16]);

}  // namespace tcpstatesd

#include "trace/trace_format.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdio>
#include <iterator>
#include <optional>
#include <string_view>

#include "common/json.hpp"
#include "kernel/close_reason.hpp"
#include "kernel/tcp_state.hpp"

namespace tcpstatesd {

namespace {

std::string printf_string(const char* format, auto... args) {
    char buffer[512];
    int n = std::snprintf(buffer, sizeof buffer, format, args...);
    return std::string(buffer, n < 0 ? 0 : std::min<size_t>(n, sizeof buffer - 1));
}

std::string_view comm_of(const tcpstates_event& event) {
    const char* comm = event.owner.comm;
    size_t n = 0;
    while (n < sizeof event.owner.comm && comm[n] != '\0') ++n;
    return {comm, n};
}

bool owner_known(const tcpstates_event& event) {
    return event.owner.pid != 0;
}

bool start_known(const tcpstates_transition& t) {
    return !(t.flags & TCPSTATES_EVENT_START_UNKNOWN);
}

bool is_transition(const tcpstates_transition& t) {
    return t.kind == TCPSTATES_KIND_TRANSITION;
}

// The name of each kind of record: in place of OLDSTATE on a text line (a transition has its
// states there, so no such name) and as JSON's "event".
struct KindNames {
    const char* column;
    const char* json;
};

// Indexed by the kind (enum tcpstates_record_kind).
constexpr KindNames kKindNames[] = {{"", "transition"},
                                    {"RST_SENT", "reset_sent"},
                                    {"RST_RECV", "reset_received"},
                                    {"RETRANS", "retransmit"}};
static_assert(std::size(kKindNames) == TCPSTATES_KINDS);

KindNames kind_names(unsigned kind) {
    return kind < std::size(kKindNames) ? kKindNames[kind] : KindNames{"UNKNOWN", "unknown"};
}

// Why the socket closed, on a transition to CLOSE; why a reset was sent; nothing on any other
// line.
std::optional<std::string_view> reason_of(const tcpstates_transition& t,
                                          const TraceFormat& format) {
    if (t.kind == TCPSTATES_KIND_RESET_SENT && format.reset_reasons) {
        const std::string_view name = format.reset_reasons->name(t.reset_reason);
        return name.empty() ? kOtherResetReason : name;
    }
    if (!is_transition(t) || t.new_state != TCPSTATES_CLOSE) return std::nullopt;
    return close_reason_name(
        close_reason(t.old_state, t.close_error, (t.flags & TCPSTATES_EVENT_ABORTED) != 0));
}

}  // namespace

std::string format_address(unsigned family, const uint8_t (&address)[16]) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (family == AF_INET || family == AF_INET6)
        inet_ntop(static_cast<int>(family), address, text, sizeof text);
    return text;
}

bool trace_shows(const tcpstates_event& event, const TraceFormat& format) {
    switch (event.transition.kind) {
        case TCPSTATES_KIND_TRANSITION:
            return true;
        case TCPSTATES_KIND_RESET_SENT:
        case TCPSTATES_KIND_RESET_RECEIVED:
            return format.resets;
        case TCPSTATES_KIND_RETRANSMIT:
            return format.retransmits;
    }
    return false;
}

std::string trace_header(const TraceFormat& format) {
    if (format.json) return {};
    std::string line = format.timestamp ? printf_string("%-8s ", "TIME(s)") : std::string();
    if (format.wide)
        line += printf_string("%-16s %-7s %-16s %-2s %-26s %-5s %-26s %-5s %-11s -> %-11s",
                              "SKADDR", "PID", "COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT",
                              "OLDSTATE", "NEWSTATE");
    else
        line +=
            printf_string("%-16s %-7s %-10s %-15s %-5s %-15s %-5s %-11s -> %-11s", "SKADDR", "PID",
                          "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "OLDSTATE", "NEWSTATE");
    if (format.reason) line += printf_string(" %-11s", "REASON");
    line += " MS";
    if (format.cgroup) line += " CGROUP";
    return line + '\n';
}

std::string trace_line(const tcpstates_event& event, const TraceFormat& format, int64_t wall_ns,
                       std::string_view cgroup) {
    const tcpstates_transition& t = event.transition;
    const std::string laddr = format_address(t.family, event.laddr);
    const std::string raddr = format_address(t.family, event.raddr);
    const std::string comm = owner_known(event) ? std::string(comm_of(event)) : "-";
    const std::string pid = owner_known(event) ? std::to_string(event.owner.pid) : "-";
    // A reset sent for a segment no socket took has no socket.
    const std::string skaddr =
        event.skaddr != 0 ? printf_string("%llx", static_cast<unsigned long long>(event.skaddr))
                          : "-";
    const std::string old_state(tcp_state_name(t.old_state));
    const std::string new_state(tcp_state_name(t.new_state));
    const KindNames kind = kind_names(t.kind);
    const std::optional<std::string_view> reason = reason_of(t, format);
    const double ms = static_cast<double>(t.duration_ns) / 1e6;

    if (format.json) {
        const time_t seconds = static_cast<time_t>(wall_ns / 1000000000);
        struct tm utc {};
        gmtime_r(&seconds, &utc);
        char stamp[40];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
        std::string out = "{\"time\":\"";
        out += stamp;
        out += printf_string(".%06ldZ\"", static_cast<long>(wall_ns % 1000000000 / 1000));
        out += event.skaddr != 0 ? ",\"skaddr\":\"" + skaddr + "\"" : ",\"skaddr\":null";
        if (owner_known(event)) {
            out += ",\"pid\":" + pid + ",\"comm\":";
            append_json_string(out, comm);
        } else {
            out += ",\"pid\":null,\"comm\":null";
        }
        if (format.cgroup && owner_known(event)) {
            out += ",\"cgroup\":";
            append_json_string(out, cgroup);
        } else if (format.cgroup) {
            out += ",\"cgroup\":null";
        }
        out += ",\"family\":\"";
        out += family_name(t.family);
        out += "\",\"laddr\":\"" + laddr + "\"";
        out += printf_string(",\"lport\":%u", t.lport);
        out += ",\"raddr\":\"" + raddr + "\"";
        out += printf_string(",\"rport\":%u", t.rport);
        if (format.resets || format.retransmits || !is_transition(t))
            out += printf_string(",\"event\":\"%s\"", kind.json);
        if (!is_transition(t)) {
            out += ",\"state\":\"" + new_state + "\"";
            if (reason) out += ",\"reason\":\"" + std::string(*reason) + "\"";
            return out + "}\n";
        }
        out += ",\"old_state\":\"" + old_state + "\",\"new_state\":\"" + new_state + "\"";
        if (reason) out += ",\"reason\":\"" + std::string(*reason) + "\"";
        out += start_known(t) ? printf_string(",\"duration_ms\":%.6f}\n", ms)
                              : std::string(",\"duration_ms\":null}\n");
        return out;
    }

    std::string line;
    if (format.timestamp) {
        const time_t seconds = static_cast<time_t>(wall_ns / 1000000000);
        struct tm local {};
        localtime_r(&seconds, &local);
        char stamp[16];
        std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
        line += printf_string("%8s ", stamp);
    }
    // "OLDSTATE -> NEWSTATE", or "RST_SENT in STATE": the same words and widths.
    const std::string states =
        is_transition(t) ? printf_string("%-11s -> %-11s", old_state.c_str(), new_state.c_str())
                         : printf_string("%-11s in %-11s", kind.column, new_state.c_str());
    const std::string duration =
        is_transition(t) && start_known(t) ? printf_string("%.3f", ms) : "-";
    if (format.wide)
        line += printf_string("%-16s %-7s %-16s %-2d %-26s %-5u %-26s %-5u %s", skaddr.c_str(),
                              pid.c_str(), comm.c_str(), t.family == AF_INET ? 4 : 6, laddr.c_str(),
                              t.lport, raddr.c_str(), t.rport, states.c_str());
    else
        line += printf_string("%-16s %-7s %-10.10s %-15s %-5u %-15s %-5u %s", skaddr.c_str(),
                              pid.c_str(), comm.c_str(), laddr.c_str(), t.lport, raddr.c_str(),
                              t.rport, states.c_str());
    if (format.reason) line += printf_string(" %-11s", reason ? std::string(*reason).c_str() : "-");
    line += ' ';
    line += duration;
    if (format.cgroup) {
        line += ' ';
        line += owner_known(event) ? cgroup : "-";
    }
    return line + '\n';
}

}  // namespace tcpstatesd

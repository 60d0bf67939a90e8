#include "trace/trace_format.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdio>
#include <string_view>

#include "common/json.hpp"
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

}  // namespace

std::string format_address(unsigned family, const uint8_t (&address)[16]) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (family == AF_INET || family == AF_INET6)
        inet_ntop(static_cast<int>(family), address, text, sizeof text);
    return text;
}

std::string trace_header(const TraceFormat& format) {
    if (format.json) return {};
    std::string line = format.timestamp ? printf_string("%-8s ", "TIME(s)") : std::string();
    if (format.wide)
        line += printf_string("%-16s %-7s %-16s %-2s %-26s %-5s %-26s %-5s %-11s -> %-11s %s\n",
                              "SKADDR", "PID", "COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT",
                              "OLDSTATE", "NEWSTATE", "MS");
    else
        line += printf_string("%-16s %-7s %-10s %-15s %-5s %-15s %-5s %-11s -> %-11s %s\n",
                              "SKADDR", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT",
                              "OLDSTATE", "NEWSTATE", "MS");
    if (format.cgroup) line.insert(line.size() - 1, " CGROUP");
    return line;
}

std::string trace_line(const tcpstates_event& event, const TraceFormat& format, int64_t wall_ns,
                       std::string_view cgroup) {
    const tcpstates_transition& t = event.transition;
    const std::string laddr = format_address(t.family, event.laddr);
    const std::string raddr = format_address(t.family, event.raddr);
    const std::string comm = owner_known(event) ? std::string(comm_of(event)) : "-";
    const std::string pid = owner_known(event) ? std::to_string(event.owner.pid) : "-";
    const std::string old_state(tcp_state_name(t.old_state));
    const std::string new_state(tcp_state_name(t.new_state));
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
        out += printf_string(",\"skaddr\":\"%llx\"", static_cast<unsigned long long>(event.skaddr));
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
        out += ",\"old_state\":\"" + old_state + "\",\"new_state\":\"" + new_state + "\"";
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
    const std::string duration = start_known(t) ? printf_string("%.3f", ms) : "-";
    const auto skaddr = static_cast<unsigned long long>(event.skaddr);
    if (format.wide)
        line += printf_string("%-16llx %-7s %-16s %-2d %-26s %-5u %-26s %-5u %-11s -> %-11s %s",
                              skaddr, pid.c_str(), comm.c_str(), t.family == AF_INET ? 4 : 6,
                              laddr.c_str(), t.lport, raddr.c_str(), t.rport, old_state.c_str(),
                              new_state.c_str(), duration.c_str());
    else
        line +=
            printf_string("%-16llx %-7s %-10.10s %-15s %-5u %-15s %-5u %-11s -> %-11s %s", skaddr,
                          pid.c_str(), comm.c_str(), laddr.c_str(), t.lport, raddr.c_str(), t.rport,
                          old_state.c_str(), new_state.c_str(), duration.c_str());
    if (format.cgroup) {
        line += ' ';
        line += owner_known(event) ? cgroup : "-";
    }
    return line + '\n';
}

}  // namespace tcpstatesd

#include <arpa/inet.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "trace/trace_format.hpp"

using namespace tcpstatesd;

namespace {

tcpstates_event make_event(int family) {
    tcpstates_event e{};
    e.skaddr = 0xffff8881055d40c0ull;
    e.ts_ns = 1;
    e.transition.duration_ns = 548123;
    e.owner.pid = 3281;
    e.owner.cgroup_id = 77;
    e.transition.family = static_cast<uint16_t>(family);
    e.transition.lport = 44600;
    e.transition.rport = 46443;
    e.transition.old_state = TCPSTATES_SYN_SENT;
    e.transition.new_state = TCPSTATES_ESTABLISHED;
    std::strcpy(e.owner.comm, "python3");
    if (family == AF_INET) {
        inet_pton(AF_INET, "127.0.0.1", e.laddr);
        inet_pton(AF_INET, "10.1.2.3", e.raddr);
    } else {
        inet_pton(AF_INET6, "::1", e.laddr);
        inet_pton(AF_INET6, "fe80::1:2", e.raddr);
    }
    return e;
}

}  // namespace

TEST_CASE("trace: header and line match libbpf-tools tcpstates columns") {
    TraceFormat plain;
    // Captured from libbpf-tools tcpstates 0.26 on Debian 12.
    CHECK(trace_header(plain) ==
          "SKADDR           PID     COMM       LADDR           LPORT RADDR           RPORT "
          "OLDSTATE    -> NEWSTATE    MS\n");
    CHECK(trace_line(make_event(AF_INET), plain, 0) ==
          "ffff8881055d40c0 3281    python3    127.0.0.1       44600 10.1.2.3        46443 "
          "SYN_SENT    -> ESTABLISHED 0.548\n");
}

TEST_CASE("trace: wide columns carry the IP version and fit IPv6 addresses") {
    TraceFormat wide;
    wide.wide = true;
    CHECK(trace_header(wide) ==
          "SKADDR           PID     COMM             IP LADDR                      LPORT RADDR  "
          "                    RPORT OLDSTATE    -> NEWSTATE    MS\n");
    CHECK(trace_line(make_event(AF_INET6), wide, 0) ==
          "ffff8881055d40c0 3281    python3          6  ::1                        44600 "
          "fe80::1:2                  46443 SYN_SENT    -> ESTABLISHED 0.548\n");
}

TEST_CASE("trace: a transition with unknown start shows '-' and JSON null, never 0") {
    tcpstates_event e = make_event(AF_INET);
    e.transition.flags = TCPSTATES_EVENT_START_UNKNOWN;
    e.transition.duration_ns = 0;
    TraceFormat plain;
    const std::string line = trace_line(e, plain, 0);
    CHECK(line.substr(line.size() - 3) == " -\n");
    TraceFormat json;
    json.json = true;
    CHECK_THAT(trace_line(e, json, 0), Catch::EndsWith("\"duration_ms\":null}\n"));
}

TEST_CASE("trace: timestamp column is wall-clock HH:MM:SS") {
    TraceFormat stamped;
    stamped.timestamp = true;
    CHECK(trace_header(stamped).rfind("TIME(s)  SKADDR", 0) == 0);
    setenv("TZ", "UTC", 1);
    tzset();
    const int64_t wall = (int64_t(3600) * 5 + 60 * 5 + 52) * 1000000000;  // 05:05:52 UTC
    CHECK(trace_line(make_event(AF_INET), stamped, wall).rfind("05:05:52 ffff8881055d40c0", 0) ==
          0);
}

TEST_CASE("trace: JSON lines are complete and escape the command name") {
    tcpstates_event e = make_event(AF_INET6);
    std::strcpy(e.owner.comm, "a\"b\\c\nd");
    TraceFormat json;
    json.json = true;
    const int64_t wall = int64_t(1700000000) * 1000000000 + 123456789;
    CHECK(trace_header(json).empty());
    CHECK(trace_line(e, json, wall) ==
          "{\"time\":\"2023-11-14T22:13:20.123456Z\",\"skaddr\":\"ffff8881055d40c0\","
          "\"pid\":3281,\"comm\":\"a\\\"b\\\\c\\nd\",\"family\":\"ipv6\",\"laddr\":\"::1\","
          "\"lport\":44600,\"raddr\":\"fe80::1:2\",\"rport\":46443,\"old_state\":\"SYN_SENT\","
          "\"new_state\":\"ESTABLISHED\",\"duration_ms\":0.548123}\n");
}

TEST_CASE("trace: an unknown owner shows '-' and JSON null, never a made-up process") {
    tcpstates_event e = make_event(AF_INET);
    e.owner = {};
    TraceFormat plain;
    plain.cgroup = true;
    CHECK(trace_line(e, plain, 0, "/ignored") ==
          "ffff8881055d40c0 -       -          127.0.0.1       44600 10.1.2.3        46443 "
          "SYN_SENT    -> ESTABLISHED 0.548 -\n");
    TraceFormat json;
    json.json = true;
    json.cgroup = true;
    CHECK_THAT(trace_line(e, json, 0, "/ignored"),
               Catch::Contains("\"pid\":null,\"comm\":null,\"cgroup\":null,"));
}

TEST_CASE("trace: --cgroup adds the owner's cgroup as the last column and a JSON field") {
    TraceFormat plain;
    plain.cgroup = true;
    CHECK_THAT(trace_header(plain), Catch::EndsWith(" MS CGROUP\n"));
    CHECK_THAT(trace_line(make_event(AF_INET), plain, 0, "/system.slice/nginx.service"),
               Catch::EndsWith(" ESTABLISHED 0.548 /system.slice/nginx.service\n"));
    TraceFormat json;
    json.json = true;
    json.cgroup = true;
    CHECK_THAT(trace_line(make_event(AF_INET), json, 0, "/a b"),
               Catch::Contains("\"comm\":\"python3\",\"cgroup\":\"/a b\",\"family\""));
}

#include <arpa/inet.h>
#include <bpf/btf.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <memory>

#include "trace/trace_format.hpp"

using namespace tcpstatesd;

namespace {

// make_event(AF_INET)'s columns up to its remote port, as a plain and a wide line print them.
const std::string kPlainSocket =
    "ffff8881055d40c0 3281    python3    127.0.0.1       44600 10.1.2.3        46443 ";
const std::string kWideSocket =
    "ffff8881055d40c0 3281    python3          4  127.0.0.1                  44600 "
    "10.1.2.3                   46443 ";
// The plain header up to NEWSTATE.
const std::string kPlainHeader =
    "SKADDR           PID     COMM       LADDR           LPORT RADDR           RPORT "
    "OLDSTATE    -> NEWSTATE    ";

TraceFormat json_format() {
    TraceFormat json;
    json.json = true;
    return json;
}

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
    CHECK(trace_header(plain) == kPlainHeader + "MS\n");
    CHECK(trace_line(make_event(AF_INET), plain, 0) ==
          kPlainSocket + "SYN_SENT    -> ESTABLISHED 0.548\n");
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
    CHECK_THAT(trace_line(e, json_format(), 0), Catch::EndsWith("\"duration_ms\":null}\n"));
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
    TraceFormat json = json_format();
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
    TraceFormat json = json_format();
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
    TraceFormat json = json_format();
    json.cgroup = true;
    CHECK_THAT(trace_line(make_event(AF_INET), json, 0, "/a b"),
               Catch::Contains("\"comm\":\"python3\",\"cgroup\":\"/a b\",\"family\""));
}

namespace {

// connect() refused: the SYN answered by a RST, sk_err ECONNREFUSED at the move to CLOSE.
tcpstates_event refused_connect() {
    tcpstates_event e = make_event(AF_INET);
    e.transition.old_state = TCPSTATES_SYN_SENT;
    e.transition.new_state = TCPSTATES_CLOSE;
    e.transition.close_error = ECONNREFUSED;
    return e;
}

// A record of another kind than a transition, in the socket's state `state`.
tcpstates_event record(tcpstates_record_kind kind, int state) {
    tcpstates_event e = make_event(AF_INET);
    e.transition.kind = kind;
    e.transition.old_state = e.transition.new_state = static_cast<uint8_t>(state);
    e.transition.duration_ns = 0;
    e.transition.flags = TCPSTATES_EVENT_START_UNKNOWN;
    return e;
}

// The RST the kernel sends for a SYN to a port nobody listens on: no socket, no owner, the
// segment's addresses (local: its destination).
tcpstates_event reset_without_socket() {
    tcpstates_event e = record(TCPSTATES_KIND_RESET_SENT, TCPSTATES_CLOSE);
    e.skaddr = 0;
    e.owner = {};
    e.transition.cgroup_id = 0;
    e.transition.lport = 46443;
    e.transition.rport = 44600;
    inet_pton(AF_INET, "127.0.0.1", e.raddr);
    return e;
}

}  // namespace

TEST_CASE("trace: without the new flags a transition to CLOSE prints as tcpstates prints it") {
    TraceFormat plain;
    CHECK(trace_line(refused_connect(), plain, 0) ==
          kPlainSocket + "SYN_SENT    -> CLOSE       0.548\n");
}

TEST_CASE("trace: --reason adds a REASON column before MS, '-' on lines not ending in CLOSE") {
    TraceFormat with_reason;
    with_reason.reason = true;
    CHECK(trace_header(with_reason) == kPlainHeader + "REASON      MS\n");
    CHECK(trace_line(refused_connect(), with_reason, 0) ==
          kPlainSocket + "SYN_SENT    -> CLOSE       refused     0.548\n");
    CHECK(trace_line(make_event(AF_INET), with_reason, 0) ==
          kPlainSocket + "SYN_SENT    -> ESTABLISHED -           0.548\n");
}

TEST_CASE(
    "trace: the reason column is the close reason of the state left, the error and an abort") {
    TraceFormat with_reason;
    with_reason.reason = true;
    tcpstates_event e = refused_connect();
    const auto [old_state, error, flags, columns] = GENERATE(table<int, int, int, std::string>({
        {TCPSTATES_SYN_SENT, ETIMEDOUT, 0, " SYN_SENT    -> CLOSE       timeout     0.548\n"},
        {TCPSTATES_SYN_SENT, 0, 0, " SYN_SENT    -> CLOSE       canceled    0.548\n"},
        {TCPSTATES_ESTABLISHED, ECONNRESET, 0, " ESTABLISHED -> CLOSE       reset       0.548\n"},
        {TCPSTATES_ESTABLISHED, 0, 0, " ESTABLISHED -> CLOSE       aborted     0.548\n"},
        {TCPSTATES_ESTABLISHED, ECONNABORTED, 0, " ESTABLISHED -> CLOSE       aborted     0.548\n"},
        {TCPSTATES_SYN_SENT, EHOSTUNREACH, 0, " SYN_SENT    -> CLOSE       unreachable 0.548\n"},
        {TCPSTATES_LAST_ACK, 0, 0, " LAST_ACK    -> CLOSE       normal      0.548\n"},
        {TCPSTATES_FIN_WAIT2, 0, TCPSTATES_EVENT_ABORTED,
         " FIN_WAIT2   -> CLOSE       aborted     0.548\n"},
    }));
    e.transition.old_state = static_cast<uint8_t>(old_state);
    e.transition.close_error = static_cast<uint8_t>(error);
    e.transition.flags = static_cast<uint8_t>(e.transition.flags | flags);
    CHECK_THAT(trace_line(e, with_reason, 0), Catch::EndsWith(columns));
}

TEST_CASE("trace: --reason and --cgroup together: REASON before MS, CGROUP last, wide too") {
    TraceFormat format;
    format.reason = true;
    format.cgroup = true;
    format.wide = true;
    CHECK_THAT(trace_header(format), Catch::EndsWith(" NEWSTATE    REASON      MS CGROUP\n"));
    CHECK(trace_line(refused_connect(), format, 0, "/user.slice") ==
          kWideSocket + "SYN_SENT    -> CLOSE       refused     0.548 /user.slice\n");
}

TEST_CASE("trace: a JSON line to CLOSE always carries the reason, other lines have none") {
    CHECK(trace_line(refused_connect(), json_format(), 0) ==
          "{\"time\":\"1970-01-01T00:00:00.000000Z\",\"skaddr\":\"ffff8881055d40c0\","
          "\"pid\":3281,\"comm\":\"python3\",\"family\":\"ipv4\",\"laddr\":\"127.0.0.1\","
          "\"lport\":44600,\"raddr\":\"10.1.2.3\",\"rport\":46443,\"old_state\":\"SYN_SENT\","
          "\"new_state\":\"CLOSE\",\"reason\":\"refused\",\"duration_ms\":0.548123}\n");
    CHECK_THAT(trace_line(make_event(AF_INET), json_format(), 0),
               !Catch::Contains("reason") && !Catch::Contains("event"));
}

TEST_CASE("trace: a reset sent for a segment without socket shows '-' for socket and owner") {
    TraceFormat format;
    format.resets = true;
    format.reason = true;
    format.cgroup = true;
    CHECK(trace_line(reset_without_socket(), format, 0, "/ignored") ==
          "-                -       -          127.0.0.1       46443 127.0.0.1       44600 "
          "RST_SENT    in CLOSE       -           - -\n");
    format = json_format();
    format.resets = true;
    CHECK(trace_line(reset_without_socket(), format, 0) ==
          "{\"time\":\"1970-01-01T00:00:00.000000Z\",\"skaddr\":null,\"pid\":null,"
          "\"comm\":null,\"family\":\"ipv4\",\"laddr\":\"127.0.0.1\",\"lport\":46443,"
          "\"raddr\":\"127.0.0.1\",\"rport\":44600,\"event\":\"reset_sent\",\"state\":\"CLOSE\"}"
          "\n");
}

TEST_CASE("trace: a reset sent shows the kernel's reason in REASON and JSON, other if unnamed") {
    const std::unique_ptr<btf, decltype(&btf__free)> types(btf__new_empty(), btf__free);
    REQUIRE(btf__add_enum(types.get(), "sk_rst_reason", 4) > 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_NO_SOCKET", 1) == 0);
    const tcpstatesd::ResetReasons reasons(types.get());
    TraceFormat format;
    format.resets = format.reason = true;
    format.reset_reasons = &reasons;
    tcpstates_event e = reset_without_socket();
    e.transition.reset_reason = 1;
    CHECK_THAT(trace_line(e, format, 0),
               Catch::EndsWith("RST_SENT    in CLOSE       no_socket   -\n"));
    e.transition.reset_reason = 7;
    CHECK_THAT(trace_line(e, format, 0),
               Catch::EndsWith("RST_SENT    in CLOSE       other       -\n"));
    format = json_format();
    format.resets = true;
    format.reset_reasons = &reasons;
    e.transition.reset_reason = 1;
    CHECK_THAT(trace_line(e, format, 0),
               Catch::EndsWith(
                   "\"event\":\"reset_sent\",\"state\":\"CLOSE\",\"reason\":\"no_socket\"}\n"));
}

TEST_CASE("trace: a reset received shows RST_RECV in the socket's state and its owner") {
    TraceFormat format;
    format.resets = true;
    CHECK(trace_line(record(TCPSTATES_KIND_RESET_RECEIVED, TCPSTATES_SYN_SENT), format, 0) ==
          kPlainSocket + "RST_RECV    in SYN_SENT    -\n");
    format = json_format();
    format.resets = true;
    CHECK_THAT(trace_line(record(TCPSTATES_KIND_RESET_RECEIVED, TCPSTATES_SYN_SENT), format, 0),
               Catch::EndsWith("\"pid\":3281,\"comm\":\"python3\",\"family\":\"ipv4\","
                               "\"laddr\":\"127.0.0.1\",\"lport\":44600,\"raddr\":\"10.1.2.3\","
                               "\"rport\":46443,\"event\":\"reset_received\","
                               "\"state\":\"SYN_SENT\"}\n"));
}

TEST_CASE("trace: a retransmission shows RETRANS in the socket's state, no duration") {
    TraceFormat format;
    format.retransmits = true;
    format.wide = true;
    // Even a duration the record should not have is not shown.
    tcpstates_event e = record(TCPSTATES_KIND_RETRANSMIT, TCPSTATES_ESTABLISHED);
    e.transition.flags = 0;
    e.transition.duration_ns = 5000000;
    CHECK(trace_line(e, format, 0) == kWideSocket + "RETRANS     in ESTABLISHED -\n");
    format = json_format();
    format.retransmits = true;
    CHECK_THAT(trace_line(e, format, 0), Catch::EndsWith("\"rport\":46443,\"event\":\"retransmit\","
                                                         "\"state\":\"ESTABLISHED\"}\n"));
}

TEST_CASE("trace: with --resets or --retransmits every JSON line names its event") {
    TraceFormat format = json_format();
    SECTION("--resets") {
        format.resets = true;
    }
    SECTION("--retransmits") {
        format.retransmits = true;
    }
    CHECK_THAT(trace_line(make_event(AF_INET), format, 0),
               Catch::EndsWith("\"rport\":46443,\"event\":\"transition\","
                               "\"old_state\":\"SYN_SENT\",\"new_state\":\"ESTABLISHED\","
                               "\"duration_ms\":0.548123}\n"));
    CHECK_THAT(trace_line(refused_connect(), format, 0),
               Catch::EndsWith("\"event\":\"transition\",\"old_state\":\"SYN_SENT\","
                               "\"new_state\":\"CLOSE\",\"reason\":\"refused\","
                               "\"duration_ms\":0.548123}\n"));
}

TEST_CASE("trace: resets and retransmissions are printed only when asked for") {
    const tcpstates_event transition = make_event(AF_INET);
    const tcpstates_event sent = record(TCPSTATES_KIND_RESET_SENT, TCPSTATES_ESTABLISHED);
    const tcpstates_event received = record(TCPSTATES_KIND_RESET_RECEIVED, TCPSTATES_SYN_SENT);
    const tcpstates_event retransmit = record(TCPSTATES_KIND_RETRANSMIT, TCPSTATES_ESTABLISHED);
    tcpstates_event unknown = transition;
    unknown.transition.kind = TCPSTATES_KINDS;

    TraceFormat format;
    CHECK(trace_shows(transition, format));
    CHECK_FALSE(trace_shows(sent, format));
    CHECK_FALSE(trace_shows(received, format));
    CHECK_FALSE(trace_shows(retransmit, format));
    CHECK_FALSE(trace_shows(unknown, format));

    format.resets = true;
    CHECK(trace_shows(transition, format));
    CHECK(trace_shows(sent, format));
    CHECK(trace_shows(received, format));
    CHECK_FALSE(trace_shows(retransmit, format));

    format.resets = false;
    format.retransmits = true;
    CHECK(trace_shows(transition, format));
    CHECK_FALSE(trace_shows(sent, format));
    CHECK_FALSE(trace_shows(received, format));
    CHECK(trace_shows(retransmit, format));

    format.resets = true;
    CHECK_FALSE(trace_shows(unknown, format));
}

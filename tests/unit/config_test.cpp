#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "exposition/prometheus_text.hpp"
#include "http/http_error.hpp"
#include "http/listening_socket.hpp"
#include "temp_dir.hpp"

using namespace tcpstatesd;
using tcpstatesd::test::TempDir;

namespace {

// The configuration names of the families set, in their order (labels.*.families).
std::vector<std::string_view> names_of(const LabelledFamilies& families) {
    std::vector<std::string_view> names;
    for (const auto& [name, flag] : kLabelledFamilyNames)
        if (families.*flag) names.push_back(name);
    return names;
}

// The message of the ConfigError that parsing `yaml` as "x.yaml" throws.
std::string error_of(const std::string& yaml) {
    try {
        parse_config(yaml, "x.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

std::vector<std::string> texts(const std::vector<ListenAddress>& addresses) {
    std::vector<std::string> out;
    for (const auto& address : addresses) out.push_back(address.text);
    return out;
}

// The address and port a listen address binds, as "family address port".
std::string bound(const ListenAddress& address) {
    const auto& storage = address.socket_address;
    char text[INET6_ADDRSTRLEN] = "";
    if (storage.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(storage);
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
        CHECK(address.socket_address_length == sizeof v4);
        return "ipv4 " + std::string(text) + " " + std::to_string(ntohs(v4.sin_port));
    }
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
    inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    CHECK(storage.ss_family == AF_INET6);
    CHECK(address.socket_address_length == sizeof v6);
    return "ipv6 " + std::string(text) + " " + std::to_string(ntohs(v6.sin6_port));
}

}  // namespace

TEST_CASE("config: built-in defaults") {
    const Config c;
    CHECK(texts(c.web.listen_addresses) == std::vector<std::string>{":9977"});
    CHECK(c.web.telemetry_path == "/metrics");
    CHECK(c.web.max_threads == 4);
    CHECK(c.events.transport == Transport::Auto);
    CHECK(c.events.ring_buffer_bytes == 4194304);
    CHECK(c.events.perf_buffer_pages == 64);
    CHECK_FALSE(c.events.socket_table_size.has_value());  // depends on events.btf_path
    CHECK(c.events.btf_path.empty());
    CHECK(c.filters == EventFilters{});
    CHECK(c.logging.level == spdlog::level::info);
    CHECK(c.logging.format == LogFormat::Text);
    CHECK(c.source == "built-in defaults");
    CHECK(c.events.resets);
    CHECK(c.events.retransmits);
    CHECK(c.metrics.exemplars);
    // `port` on the counters and the gauges, for the host's listening ports; `cgroup` on the
    // counters; both bounded.
    CHECK(names_of(c.labels.port.families) ==
          std::vector<std::string_view>{"transitions", "sockets", "closes", "resets", "retransmits",
                                        "state_oldest", "listen_queues", "ephemeral_ports"});
    CHECK(c.labels.port.listening);
    CHECK(c.labels.port.ports.empty());
    CHECK(c.labels.port.max_values == 64);
    CHECK(names_of(c.labels.cgroup.families) ==
          std::vector<std::string_view>{"transitions", "closes", "resets", "retransmits"});
    CHECK(c.labels.cgroup.max_values == 64);
    CHECK(c.labels.max_series == 1000);
}

TEST_CASE("config: labels, each on the families listed, with their values and bounds") {
    const Config c = parse_config(
        "labels:\n"
        "  max_series: 500\n"
        "  port:\n"
        "    families: [state_durations]\n"
        "    ports: [5432, \"8000-8002\"]\n"
        "    max_values: 3\n"
        "  cgroup:\n"
        "    families: []\n"
        "    max_values: 7\n",
        "x");
    CHECK(c.labels.max_series == 500);
    CHECK(c.labels.port.families == LabelledFamilies{.state_durations = true});
    CHECK_FALSE(c.labels.port.listening);
    CHECK(c.labels.port.ports == std::vector<uint16_t>{5432, 8000, 8001, 8002});
    CHECK(c.labels.port.max_values == 3);
    CHECK_FALSE(c.labels.cgroup.families.any());
    CHECK(c.labels.cgroup.max_values == 7);
    CHECK(parse_config("labels: {port: {ports: [80, listening]}}", "x").labels.port.listening);
}

TEST_CASE("config errors: events.resets and retransmits, metrics.exemplars are true or false") {
    CHECK(error_of("events:\n  resets: yes\n") ==
          "x.yaml:2:11: events.resets: expected one of false, true, got \"yes\"");
    CHECK(error_of("metrics:\n  exemplars: 1\n") ==
          "x.yaml:2:14: metrics.exemplars: expected one of false, true, got \"1\"");
}

TEST_CASE("config: metrics.native_histograms, off by default, each key read") {
    const NativeHistogramSettings defaults = Config{}.metrics.native_histograms;
    CHECK_FALSE(defaults.enabled);
    CHECK(defaults.schema == 3);
    CHECK(defaults.max_buckets == 160);
    const auto native = [](const std::string& yaml) {
        return parse_config("metrics:\n  native_histograms:\n" + yaml, "x")
            .metrics.native_histograms;
    };
    CHECK(native("    enabled: true\n") ==
          NativeHistogramSettings{.enabled = true, .schema = 3, .max_buckets = 160});
    CHECK(native("    schema: -4\n") ==
          NativeHistogramSettings{.enabled = false, .schema = -4, .max_buckets = 160});
    CHECK(native("    schema: 8\n    max_buckets: 4\n") ==
          NativeHistogramSettings{.enabled = false, .schema = 8, .max_buckets = 4});
    CHECK(native("    max_buckets: 10000\n    enabled: false\n") ==
          NativeHistogramSettings{.enabled = false, .schema = 3, .max_buckets = 10000});
    CHECK(parse_config("metrics: {native_histograms: {}}", "x").metrics.native_histograms ==
          defaults);
}

TEST_CASE("config errors: metrics.native_histograms, each key's bounds at its line and column") {
    const std::string at = "metrics:\n  native_histograms:\n";
    const std::string schema =
        "x.yaml:3:13: metrics.native_histograms.schema: expected a whole number from -4 to 8, got ";
    CHECK(error_of(at + "    schema: 9\n") == schema + "\"9\"");
    CHECK(error_of(at + "    schema: -5\n") == schema + "\"-5\"");
    CHECK(error_of(at + "    schema: 2.5\n") == schema + "\"2.5\"");
    const std::string buckets =
        "x.yaml:3:18: metrics.native_histograms.max_buckets: expected a whole number from 4 to "
        "10000, got ";
    CHECK(error_of(at + "    max_buckets: 3\n") == buckets + "\"3\"");
    CHECK(error_of(at + "    max_buckets: 10001\n") == buckets + "\"10001\"");
    CHECK(error_of(at + "    enabled: yes\n") ==
          "x.yaml:3:14: metrics.native_histograms.enabled: expected one of false, true, got "
          "\"yes\"");
    CHECK(error_of(at + "    enabled: \"true\"\n") ==
          "x.yaml:3:14: metrics.native_histograms.enabled: expected one of false, true, got the "
          "quoted string \"true\" (write true and false without quotes)");
    CHECK(error_of(at + "    buckets: 10\n") ==
          "x.yaml:3:5: metrics.native_histograms: unknown key \"buckets\", expected one of "
          "enabled, schema, max_buckets");
    CHECK(error_of("metrics:\n  native_histograms: true\n") ==
          "x.yaml:2:22: metrics.native_histograms: expected a mapping with the keys enabled, "
          "schema, max_buckets, got \"true\"");
}

TEST_CASE("config errors: labels") {
    CHECK(error_of("labels:\n  port:\n    families: [transitions, histograms]\n") ==
          "x.yaml:3:29: labels.port.families: expected one of transitions, state_durations, "
          "sockets, closes, resets, retransmits, state_oldest, listen_queues, ephemeral_ports, "
          "handshake_rtt, got \"histograms\"");
    // The walk's families know no owner.
    for (const char* walked : {"state_oldest", "listen_queues", "ephemeral_ports"})
        CHECK(error_of(std::string("labels:\n  cgroup:\n    families: [") + walked + "]\n") ==
              std::string("x.yaml:3:16: labels.cgroup.families: expected one of transitions, "
                          "state_durations, sockets, closes, resets, retransmits, "
                          "handshake_rtt, got \"") +
                  walked + "\"");
    CHECK(error_of("labels:\n  cgroup:\n    families: [sockets, sockets]\n") ==
          "x.yaml:3:25: labels.cgroup.families: \"sockets\" is listed twice");
    CHECK(error_of("labels:\n  port:\n    ports: [listening, 80, listening]\n") ==
          "x.yaml:3:28: labels.port.ports: \"listening\" is listed twice");
    CHECK(error_of("labels:\n  port:\n    ports: [listen]\n") ==
          "x.yaml:3:13: labels.port.ports: invalid port 'listen': ports are whole numbers from 1 "
          "to 65535 (or the word listening)");
    CHECK(error_of("labels:\n  port:\n    max_values: 0\n") ==
          "x.yaml:3:17: labels.port.max_values: expected a whole number from 1 to 10000, got "
          "\"0\"");
    CHECK(error_of("labels:\n  max_series: 2000000\n") ==
          "x.yaml:2:15: labels.max_series: expected a whole number from 0 to 100000, got "
          "\"2000000\"");
    CHECK(error_of("labels:\n  pod: {}\n") ==
          "x.yaml:2:3: labels: unknown key \"pod\", expected one of max_series, port, cgroup");
}

TEST_CASE("config: default buckets run 1-2.5-5 per decade from 10 us to 2.5 ks, then 1 h") {
    const auto b = default_duration_buckets();
    REQUIRE(b.size() == 27);
    CHECK(b.front() == 1e-5);
    CHECK(b[1] == 2.5e-5);
    CHECK(b[2] == 5e-5);
    CHECK(b[15] == 1.0);
    CHECK(b[25] == 2500);
    CHECK(b.back() == 3600);
    for (size_t i = 0; i + 1 < b.size(); ++i) CHECK(b[i] < b[i + 1]);
    // Each decade is 1, 2.5, 5 times its power of ten.
    for (size_t i = 0; i < 24; ++i) {
        const double decade = std::pow(10.0, -5.0 + static_cast<double>(i / 3));
        const double step[] = {1, 2.5, 5};
        CHECK(b[i] == Approx(decade * step[i % 3]).epsilon(1e-12));
    }
    CHECK(Config{}.metrics.duration_buckets == b);
}

TEST_CASE("config: default handshake RTT buckets run 1-2.5-5 per decade from 10 us to 5 s") {
    const auto b = default_handshake_rtt_buckets();
    REQUIRE(b.size() == 18);
    for (size_t i = 0; i < b.size(); ++i) {
        const double decade = std::pow(10.0, -5.0 + static_cast<double>(i / 3));
        const double step[] = {1, 2.5, 5};
        CHECK(b[i] == Approx(decade * step[i % 3]).epsilon(1e-12));
    }
    CHECK(Config{}.metrics.handshake_rtt_buckets == b);
    CHECK(parse_config("metrics:\n  handshake_rtt_buckets_seconds: [0.0001, 0.001]\n", "x")
              .metrics.handshake_rtt_buckets == std::vector<double>{0.0001, 0.001});
    CHECK(error_of("metrics:\n  handshake_rtt_buckets_seconds: [0.1, 0.01]\n") ==
          "x.yaml:2:40: metrics.handshake_rtt_buckets_seconds: buckets must be increasing: 0.01 "
          "follows 0.1 (at line 2, column 35)");
}

TEST_CASE("config: empty documents, comments and empty sections mean defaults") {
    Config expected;
    expected.source = "x.yaml";
    CHECK(parse_config("", "x.yaml") == expected);
    CHECK(parse_config("# nothing here\n\n", "x.yaml") == expected);
    CHECK(parse_config("---\n", "x.yaml") == expected);
    CHECK(parse_config("web:\n  # max_threads: 8\nevents:\nfilters: {}\nmetrics:\nlogging:\n",
                       "x.yaml") == expected);
}

TEST_CASE("config: every key read from a full document") {
    const Config c = parse_config(R"(
web:
  listen_addresses: ["127.0.0.1:9100", "[::1]:9100", ":80"]
  telemetry_path: /stats/tcp
  max_threads: 64
events:
  transport: perfbuf
  ring_buffer_bytes: 1073741824
  perf_buffer_pages: 4096
  socket_table_size: 16777216
  btf_path: /var/lib/btf/5.4.0-42-generic.btf
  resets: false
  retransmits: true
filters:
  families: [ipv6]
  local_ports: [443, "8000-8002", 80, 22-23]
  remote_ports:
    - "5432"
metrics:
  duration_buckets_seconds: [0.001, 1e-2, .5, +2, 60]
  socket_walk_cpu_percent: 50
  exemplars: false
logging:
  level: "off"
  format: json
)",
                                  "/etc/x.yaml");
    CHECK(c.source == "/etc/x.yaml");
    CHECK(texts(c.web.listen_addresses) ==
          std::vector<std::string>{"127.0.0.1:9100", "[::1]:9100", ":80"});
    CHECK(c.web.telemetry_path == "/stats/tcp");
    CHECK(c.web.max_threads == 64);
    CHECK(c.events.transport == Transport::PerfBuffer);
    CHECK(c.events.ring_buffer_bytes == 1u << 30);
    CHECK(c.events.perf_buffer_pages == 4096);
    CHECK(c.events.socket_table_size == 1u << 24);
    CHECK(c.events.btf_path == "/var/lib/btf/5.4.0-42-generic.btf");
    CHECK_FALSE(c.events.resets);
    CHECK(c.events.retransmits);
    CHECK(c.filters.family == AF_INET6);
    CHECK(c.filters.local_ports == std::vector<uint16_t>{22, 23, 80, 443, 8000, 8001, 8002});
    CHECK(c.filters.remote_ports == std::vector<uint16_t>{5432});
    CHECK(c.metrics.duration_buckets == std::vector<double>{0.001, 0.01, 0.5, 2, 60});
    CHECK(c.metrics.socket_walk_cpu_percent == 50);
    CHECK_FALSE(c.metrics.exemplars);
    CHECK(c.logging.level == spdlog::level::off);
    CHECK(c.logging.format == LogFormat::Json);
}

TEST_CASE("config: enumerations map to their values") {
    auto transport = [](const char* v) {
        return parse_config(std::string("events: {transport: ") + v + "}", "x").events.transport;
    };
    CHECK(transport("auto") == Transport::Auto);
    CHECK(transport("ringbuf") == Transport::RingBuffer);
    CHECK(transport("perfbuf") == Transport::PerfBuffer);

    auto family = [](const char* v) {
        return parse_config(std::string("filters: {families: ") + v + "}", "x").filters.family;
    };
    CHECK(family("[ipv4]") == AF_INET);
    CHECK(family("[ipv6]") == AF_INET6);
    CHECK(family("[ipv6, ipv4]") == 0);

    auto level = [](const char* v) {
        return parse_config(std::string("logging: {level: ") + v + "}", "x").logging.level;
    };
    CHECK(level("trace") == spdlog::level::trace);
    CHECK(level("debug") == spdlog::level::debug);
    CHECK(level("info") == spdlog::level::info);
    CHECK(level("warn") == spdlog::level::warn);
    CHECK(level("error") == spdlog::level::err);
    CHECK(level("critical") == spdlog::level::critical);
    CHECK(level("off") == spdlog::level::off);
}

TEST_CASE("config: the repository's config/tcpstatesd.yaml is exactly the built-in defaults") {
    const std::string path = std::string(TCPSTATESD_SOURCE_DIR) + "/config/tcpstatesd.yaml";
    Config from_file = load_config_file(path);
    CHECK(from_file.source == path);
    from_file.source = Config{}.source;
    CHECK(from_file == Config{});
    // Equality would also hold with keys left out (they default): the file must spell out
    // every key, since it is the documented default.
    std::ifstream in(path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const char* key :
         {"listen_addresses:", "telemetry_path:", "max_threads:", "transport:",
          "ring_buffer_bytes:", "perf_buffer_pages:", "# socket_table_size:", "btf_path:",
          "resets:", "retransmits:", "families:", "local_ports:", "remote_ports:",
          "duration_buckets_seconds:", "handshake_rtt_buckets_seconds:", "socket_walk_cpu_percent:",
          "max_series:", "level:", "format:"})
        CHECK(text.find(std::string("\n  ") + key) != std::string::npos);
    for (const char* key : {"port:", "cgroup:"})
        CHECK(text.find(std::string("\n  ") + key) != std::string::npos);
    for (const char* key : {"families:", "ports:", "max_values:"})  // under labels.port
        CHECK(text.find(std::string("\n    ") + key) != std::string::npos);
}

TEST_CASE("config errors: YAML syntax, document shape") {
    CHECK(error_of("events: [1\n") == "x.yaml:2:1: invalid YAML: end of sequence flow not found");
    CHECK(error_of("web:\n  a: b: c\n") == "x.yaml:2:7: invalid YAML: illegal map value");
    CHECK(error_of("- web\n") ==
          "x.yaml:1:1: expected a mapping with the keys web, events, filters, metrics, "
          "labels, logging, got a list");
    CHECK(error_of("hello\n") ==
          "x.yaml:1:1: expected a mapping with the keys web, events, filters, metrics, "
          "labels, logging, got \"hello\"");
    // The position is the second document's "---".
    CHECK(error_of("web: {}\n---\nweb: {}\n") ==
          "x.yaml:2:1: a second YAML document; the configuration is one document");
}

TEST_CASE("config errors: unknown keys, duplicate keys, keys that are not names") {
    CHECK(error_of("wbe: {}\n") ==
          "x.yaml:1:1: unknown key \"wbe\", expected one of web, events, filters, metrics, "
          "labels, logging");
    CHECK(error_of("web:\n  port: 80\n") ==
          "x.yaml:2:3: web: unknown key \"port\", expected one of listen_addresses, "
          "telemetry_path, max_threads");
    CHECK(error_of("logging: {level: info, colour: true}\n") ==
          "x.yaml:1:24: logging: unknown key \"colour\", expected one of level, format");
    CHECK(error_of("web: {}\nevents: {}\nweb: {}\n") ==
          "x.yaml:3:1: duplicate key \"web\" (first at line 1, column 1)");
    CHECK(error_of("events:\n  transport: auto\n  socket_table_size: 8\n  transport: ringbuf\n") ==
          "x.yaml:4:3: events: duplicate key \"transport\" (first at line 2, column 3)");
    CHECK(error_of("? [web]\n: 1\n") == "x.yaml:1:3: expected a key name, got a list");
}

TEST_CASE("config errors: sections of the wrong type") {
    CHECK(error_of("web: 5\n") ==
          "x.yaml:1:6: web: expected a mapping with the keys listen_addresses, telemetry_path, "
          "max_threads, got \"5\"");
    CHECK(error_of("logging: [info]\n") ==
          "x.yaml:1:10: logging: expected a mapping with the keys level, format, got a list");
}

TEST_CASE("config errors: whole numbers") {
    const std::string expected = "web.max_threads: expected a whole number from 1 to 64, got ";
    CHECK(error_of("web:\n  max_threads: abc\n") == "x.yaml:2:16: " + expected + "\"abc\"");
    CHECK(error_of("web:\n  max_threads: -1\n") == "x.yaml:2:16: " + expected + "\"-1\"");
    CHECK(error_of("web:\n  max_threads: 1.5\n") == "x.yaml:2:16: " + expected + "\"1.5\"");
    CHECK(error_of("web:\n  max_threads: 0\n") == "x.yaml:2:16: " + expected + "\"0\"");
    CHECK(error_of("web:\n  max_threads: 65\n") == "x.yaml:2:16: " + expected + "\"65\"");
    CHECK(error_of("web:\n  max_threads: 0x10\n") == "x.yaml:2:16: " + expected + "\"0x10\"");
    CHECK(error_of("web:\n  max_threads: [4]\n") == "x.yaml:2:16: " + expected + "a list");
    CHECK(error_of("web: {max_threads: {a: 1}}\n") == "x.yaml:1:20: " + expected + "a mapping");
    CHECK(error_of("web:\n  max_threads: \"4\"\n") ==
          "x.yaml:2:16: " + expected + "the quoted string \"4\" (write numbers without quotes)");
    // An empty value points at its key: yaml-cpp marks it with the position of what follows.
    CHECK(error_of("web:\n  max_threads:\nevents: {}\n") == "x.yaml:2:3: " + expected + "nothing");
    CHECK(error_of("events:\n  socket_table_size: 99999999999999999999999\n") ==
          "x.yaml:2:22: events.socket_table_size: expected a whole number from 1 to 16777216, "
          "got \"99999999999999999999999\"");
    CHECK(error_of("events:\n  socket_table_size: 16777217\n") ==
          "x.yaml:2:22: events.socket_table_size: expected a whole number from 1 to 16777216, "
          "got \"16777217\"");
    CHECK(parse_config("events: {socket_table_size: 1}", "x").events.socket_table_size == 1);
    CHECK(error_of("metrics:\n  socket_walk_cpu_percent: 51\n") ==
          "x.yaml:2:28: metrics.socket_walk_cpu_percent: expected a whole number from 1 to 50, "
          "got \"51\"");
}

TEST_CASE("config errors: powers of two") {
    const std::string ring =
        "x.yaml:2:22: events.ring_buffer_bytes: expected a power of two from 4096 to "
        "1073741824, got ";
    CHECK(error_of("events:\n  ring_buffer_bytes: 5000\n") == ring + "\"5000\"");
    CHECK(error_of("events:\n  ring_buffer_bytes: 2048\n") == ring + "\"2048\"");
    CHECK(error_of("events:\n  ring_buffer_bytes: 2147483648\n") == ring + "\"2147483648\"");
    CHECK(parse_config("events: {ring_buffer_bytes: 4096}", "x").events.ring_buffer_bytes == 4096);
    const std::string pages =
        "x.yaml:2:22: events.perf_buffer_pages: expected a power of two from 1 to 4096, got ";
    CHECK(error_of("events:\n  perf_buffer_pages: 0\n") == pages + "\"0\"");
    CHECK(error_of("events:\n  perf_buffer_pages: 3\n") == pages + "\"3\"");
    CHECK(error_of("events:\n  perf_buffer_pages: 8192\n") == pages + "\"8192\"");
    CHECK(parse_config("events: {perf_buffer_pages: 1}", "x").events.perf_buffer_pages == 1);
}

TEST_CASE("config errors: choices") {
    CHECK(error_of("events:\n  transport: ringbuffer\n") ==
          "x.yaml:2:14: events.transport: expected one of auto, ringbuf, perfbuf, got "
          "\"ringbuffer\"");
    CHECK(error_of("logging:\n  level: warning\n") ==
          "x.yaml:2:10: logging.level: expected one of trace, debug, info, warn, error, "
          "critical, off, got \"warning\"");
    CHECK(error_of("logging:\n  level: [info]\n") ==
          "x.yaml:2:10: logging.level: expected one of trace, debug, info, warn, error, "
          "critical, off, got a list");
    CHECK(error_of("logging:\n  format: xml\n") ==
          "x.yaml:2:11: logging.format: expected one of text, json, got \"xml\"");
}

TEST_CASE("config errors: listen addresses") {
    const std::string expected =
        "web.listen_addresses: expected \":port\" (every address), \"IPv4:port\" or "
        "\"[IPv6]:port\" with a port from 1 to 65535, got ";
    CHECK(error_of("web:\n  listen_addresses: {a: 1}\n") ==
          "x.yaml:2:21: web.listen_addresses: expected a non-empty list of listen addresses, got "
          "a mapping");
    CHECK(error_of("web:\n  listen_addresses: \":9977\"\n") ==
          "x.yaml:2:21: web.listen_addresses: expected a non-empty list of listen addresses, got "
          "\":9977\"");
    CHECK(error_of("web:\n  listen_addresses: []\n") ==
          "x.yaml:2:21: web.listen_addresses: expected a non-empty list of listen addresses, got "
          "an empty list");
    CHECK(error_of("web:\n  listen_addresses:\n    - \":9977\"\n    - \"9977\"\n") ==
          "x.yaml:4:7: " + expected + "\"9977\"");
    CHECK(error_of("web:\n  listen_addresses: [\":0\"]\n") ==
          "x.yaml:2:22: " + expected + "\":0\"");
    CHECK(error_of("web:\n  listen_addresses: [\":65536\"]\n") ==
          "x.yaml:2:22: " + expected + "\":65536\"");
    CHECK(error_of("web:\n  listen_addresses: [\"1.2.3.4:\"]\n") ==
          "x.yaml:2:22: " + expected + "\"1.2.3.4:\"");
    CHECK(error_of("web:\n  listen_addresses: [\"localhost:80\"]\n") ==
          "x.yaml:2:22: " + expected +
              "\"localhost:80\" (host names are not resolved; IPv6 goes in brackets)");
    CHECK(error_of("web:\n  listen_addresses: [\"::1:80\"]\n") ==
          "x.yaml:2:22: " + expected +
              "\"::1:80\" (host names are not resolved; IPv6 goes in brackets)");
    CHECK(error_of("web:\n  listen_addresses: [\"[1.2.3.4]:80\"]\n") ==
          "x.yaml:2:22: " + expected + "\"[1.2.3.4]:80\" (not an IPv6 address)");
    CHECK(error_of("web:\n  listen_addresses: [\"[::1:80\"]\n") ==
          "x.yaml:2:22: " + expected + "\"[::1:80\"");
    CHECK(error_of("web:\n  listen_addresses: [\":9977\", \"[::1]:80\", \":9977\"]\n") ==
          "x.yaml:2:43: web.listen_addresses: \":9977\" is listed twice (first at line 2, "
          "column 22)");
}

TEST_CASE("listen addresses: the socket address to bind") {
    auto a = parse_listen_address(":9977");
    CHECK(a.text == ":9977");
    CHECK(a.every_address);
    CHECK(bound(a) == "ipv6 :: 9977");
    a = parse_listen_address("127.0.0.1:1");
    CHECK_FALSE(a.every_address);
    CHECK(bound(a) == "ipv4 127.0.0.1 1");
    a = parse_listen_address("[::1]:65535");
    CHECK_FALSE(a.every_address);
    CHECK(bound(a) == "ipv6 ::1 65535");
    a = parse_listen_address("[::]:80");
    CHECK_FALSE(a.every_address);  // IPv6 only, unlike ":80"
    CHECK(bound(a) == "ipv6 :: 80");
    CHECK_THROWS_AS(parse_listen_address(""), std::invalid_argument);
    CHECK_THROWS_AS(parse_listen_address("[]:80"), std::invalid_argument);
    CHECK_THROWS_AS(parse_listen_address("127.0.0.1:80x"), std::invalid_argument);
}

TEST_CASE("listen addresses: malformed ones are refused, naming them") {
    for (const char* bad : {"", "9977", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                            "127.0.0.1:80x", "127.0.0.1:-1", "::1:9977", "[::1:9977", ":+80",
                            "localhost:80", "[127.0.0.1]:80", "1.2.3:80", "[::1]]:80"}) {
        INFO(bad);
        CHECK_THROWS_WITH(parse_listen_address(bad, PortZero::Allowed),
                          Catch::Contains("\"" + std::string(bad) + "\""));
    }
    CHECK_THROWS_WITH(parse_listen_address("localhost:0", PortZero::Allowed),
                      Catch::Contains("host names are not resolved"));
}

TEST_CASE("listen addresses: port 0 only when the caller allows it") {
    CHECK_THROWS_WITH(parse_listen_address("127.0.0.1:0"),
                      Catch::Contains("with a port from 1 to 65535"));
    CHECK(bound(parse_listen_address("127.0.0.1:0", PortZero::Allowed)) == "ipv4 127.0.0.1 0");
    CHECK_THROWS_WITH(parse_listen_address("127.0.0.1:x", PortZero::Allowed),
                      Catch::Contains("with a port from 0 to 65535"));
}

TEST_CASE("config errors: telemetry path") {
    CHECK(error_of("web:\n  telemetry_path: metrics\n") ==
          "x.yaml:2:19: web.telemetry_path: expected a path starting with \"/\", got \"metrics\"");
    CHECK(error_of("web:\n  telemetry_path: /\n") ==
          "x.yaml:2:19: web.telemetry_path: expected a path other than \"/\" (the landing page), "
          "got \"/\"");
    CHECK(error_of("web:\n  telemetry_path: /-/metrics\n") ==
          "x.yaml:2:19: web.telemetry_path: expected a path outside \"/-/\" (reserved for "
          "/-/healthy and /-/ready), got \"/-/metrics\"");
    const std::string chars =
        "x.yaml:2:19: web.telemetry_path: expected a path of printable ASCII without spaces, "
        "\"?\", \"#\" or \"%\", got ";
    CHECK(error_of("web:\n  telemetry_path: \"/a b\"\n") == chars + "\"/a b\"");
    CHECK(error_of("web:\n  telemetry_path: \"/a?b\"\n") == chars + "\"/a?b\"");
    CHECK(error_of("web:\n  telemetry_path: \"/a\\nb\"\n") == chars + "\"/a\\x0ab\"");
    CHECK(error_of("web:\n  telemetry_path: [/a]\n") ==
          "x.yaml:2:19: web.telemetry_path: expected a path starting with \"/\", got a list");
}

TEST_CASE("telemetry path: the HTTP server's own paths and relative paths are refused") {
    // The server trusts its telemetry path: this is the only check.
    for (const char* path : {"", "metrics", "/", "/-/healthy", "/-/ready"}) {
        INFO(path);
        CHECK_THROWS_AS(validate_telemetry_path(path), std::invalid_argument);
    }
}

TEST_CASE("config errors: families") {
    CHECK(error_of("filters:\n  families: []\n") ==
          "x.yaml:2:13: filters.families: expected a non-empty list of ipv4, ipv6, got an empty "
          "list");
    CHECK(error_of("filters:\n  families: ipv4\n") ==
          "x.yaml:2:13: filters.families: expected a non-empty list of ipv4, ipv6, got \"ipv4\"");
    CHECK(error_of("filters:\n  families: [ipv4, ipv5]\n") ==
          "x.yaml:2:20: filters.families: expected one of ipv4, ipv6, got \"ipv5\"");
    CHECK(error_of("filters:\n  families: [ipv4, ipv4]\n") ==
          "x.yaml:2:20: filters.families: \"ipv4\" is listed twice");
}

TEST_CASE("config errors: ports") {
    CHECK(error_of("filters:\n  local_ports: 80\n") ==
          "x.yaml:2:16: filters.local_ports: expected a list of ports and port ranges, got "
          "\"80\"");
    CHECK(error_of("filters:\n  local_ports: [0]\n") ==
          "x.yaml:2:17: filters.local_ports: invalid port '0': ports are whole numbers from 1 to "
          "65535");
    CHECK(error_of("filters:\n  remote_ports: [80, 65536]\n") ==
          "x.yaml:2:22: filters.remote_ports: invalid port '65536': ports are whole numbers from "
          "1 to 65535");
    CHECK(error_of("filters:\n  local_ports: [-1]\n") ==
          "x.yaml:2:17: filters.local_ports: invalid port '-1': ports are whole numbers from 1 to "
          "65535");
    CHECK(error_of("filters:\n  local_ports: [http]\n") ==
          "x.yaml:2:17: filters.local_ports: invalid port 'http': ports are whole numbers from 1 "
          "to 65535");
    CHECK(error_of("filters:\n  local_ports: [\"9-3\"]\n") ==
          "x.yaml:2:17: filters.local_ports: invalid port range '9-3': the first port is above "
          "the last");
    CHECK(error_of("filters:\n  local_ports: [\"80,81\"]\n") ==
          "x.yaml:2:17: filters.local_ports: expected a port from 1 to 65535 or a range "
          "\"first-last\", got \"80,81\" (write one port or range per list item)");
    CHECK(error_of("filters:\n  local_ports: [{a: 1}]\n") ==
          "x.yaml:2:17: filters.local_ports: expected a port from 1 to 65535 or a range "
          "\"first-last\", got a mapping");
    CHECK(error_of("filters:\n  local_ports:\n    - 80\n    - 79-81\n") ==
          "x.yaml:4:7: filters.local_ports: port 80 is listed twice (first at line 3, column 7)");
    // 1-1024 is exactly the kernel's capacity; one more port is too many.
    CHECK(parse_config("filters: {local_ports: [1-1024]}", "x").filters.local_ports.size() == 1024);
    CHECK(error_of("filters:\n  local_ports: [1-1024, 2000]\n") ==
          "x.yaml:2:25: filters.local_ports: more than 1024 ports, the kernel filter's capacity");
    CHECK(parse_config("filters: {local_ports: []}", "x").filters.local_ports.empty());
}

TEST_CASE("config errors: duration buckets") {
    const std::string key = "metrics.duration_buckets_seconds: ";
    const std::string number = key + "expected a finite number of seconds greater than 0, got ";
    CHECK(error_of("metrics:\n  duration_buckets_seconds: []\n") ==
          "x.yaml:2:29: " + key +
              "expected a non-empty list of bucket upper bounds in seconds, got an empty list");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: {a: 1}\n") ==
          "x.yaml:2:29: " + key +
              "expected a non-empty list of bucket upper bounds in seconds, got a mapping");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [0.1, abc]\n") ==
          "x.yaml:2:35: " + number + "\"abc\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [0]\n") ==
          "x.yaml:2:30: " + number + "\"0\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [-1]\n") ==
          "x.yaml:2:30: " + number + "\"-1\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [.inf]\n") ==
          "x.yaml:2:30: " + number + "\".inf\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [nan]\n") ==
          "x.yaml:2:30: " + number + "\"nan\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [1e400]\n") ==
          "x.yaml:2:30: " + number + "\"1e400\"");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [\"0.5\"]\n") ==
          "x.yaml:2:30: " + number + "the quoted string \"0.5\" (write numbers without quotes)");
    CHECK(error_of("metrics:\n  duration_buckets_seconds:\n    - 0.1\n    - 0.5\n    - 5e-1\n") ==
          "x.yaml:5:7: " + key + "bucket 5e-1 is listed twice (first at line 4, column 7)");
    CHECK(error_of("metrics:\n  duration_buckets_seconds:\n    - 0.1\n    - 0.5\n    - 0.2\n") ==
          "x.yaml:5:7: " + key +
              "buckets must be increasing: 0.2 follows 0.5 (at line 4, column 7)");

    std::string sixty_four = "metrics:\n  duration_buckets_seconds: [1";
    for (int i = 2; i <= 64; ++i) sixty_four += ", " + std::to_string(i);
    CHECK(parse_config(sixty_four + "]\n", "x").metrics.duration_buckets.size() == 64);
    const std::string too_many = sixty_four + ", 65]\n";
    CHECK(error_of(too_many) == "x.yaml:2:" + std::to_string(too_many.find("65]") - 9 + 1) + ": " +
                                    key + "more than 64 buckets");
}

TEST_CASE("config files: missing, unreadable, found") {
    TempDir dir;
    CHECK_THROWS_WITH(
        load_config_file(dir.path() + "/absent.yaml"),
        "cannot open configuration file " + dir.path() + "/absent.yaml: No such file or directory");
    CHECK_THROWS_WITH(load_config_file(dir.path()),
                      "cannot open configuration file " + dir.path() + ": Is a directory");

    const std::string file = dir.write("bad.yaml", "logging:\n  level: loud\n");
    CHECK_THROWS_WITH(load_config_file(file),
                      file +
                          ":2:10: logging.level: expected one of trace, debug, info, warn, "
                          "error, critical, off, got \"loud\"");

    const std::string good = dir.write("good.yaml", "web:\n  max_threads: 2\n");
    const Config c = load_config_file(good);
    CHECK(c.web.max_threads == 2);
    CHECK(c.source == good);
}

TEST_CASE("config files: the default path is optional, a given path is not") {
    TempDir dir;
    const std::string default_path = dir.path() + "/tcpstatesd.yaml";

    // No file at the default path: built-in defaults.
    CHECK(load_config(std::nullopt, default_path) == Config{});

    // A file at the default path is read.
    dir.write("tcpstatesd.yaml", "web: {max_threads: 7}\n");
    Config c = load_config(std::nullopt, default_path);
    CHECK(c.web.max_threads == 7);
    CHECK(c.source == default_path);

    // A given path wins over the default path, and must exist.
    const std::string other = dir.write("other.yaml", "web: {max_threads: 9}\n");
    CHECK(load_config(other, default_path).web.max_threads == 9);
    CHECK_THROWS_WITH(load_config(dir.path() + "/nope.yaml", default_path),
                      Catch::Contains("nope.yaml: No such file or directory"));

    // A default path that exists but cannot be read is an error, not silently the defaults.
    std::filesystem::create_directory(dir.path() + "/dir.yaml");
    CHECK_THROWS_WITH(load_config(std::nullopt, dir.path() + "/dir.yaml"),
                      Catch::Contains("Is a directory"));
}

TEST_CASE("config: keys needing a restart") {
    const Config running;
    CHECK(keys_needing_restart(running, running).empty());

    Config live = running;
    live.filters.family = AF_INET;
    live.filters.local_ports = {80};
    live.filters.remote_ports = {443};
    live.metrics.duration_buckets = {1, 2};
    live.metrics.native_histograms = {.enabled = true, .schema = 0, .max_buckets = 4};
    live.logging.level = spdlog::level::debug;
    live.logging.format = LogFormat::Json;
    live.source = "/elsewhere.yaml";
    CHECK(keys_needing_restart(running, live).empty());

    Config next = running;
    next.web.listen_addresses = {parse_listen_address(":1")};
    next.web.telemetry_path = "/m";
    next.web.max_threads = 1;
    next.events.transport = Transport::PerfBuffer;
    next.events.ring_buffer_bytes = 4096;
    next.events.perf_buffer_pages = 1;
    next.events.socket_table_size = 1;
    next.events.btf_path = "/x.btf";
    next.events.resets = false;
    next.events.retransmits = false;
    CHECK(keys_needing_restart(running, next) ==
          std::vector<std::string>{"web.listen_addresses", "web.telemetry_path", "web.max_threads",
                                   "events.transport", "events.ring_buffer_bytes",
                                   "events.perf_buffer_pages", "events.socket_table_size",
                                   "events.btf_path", "events.resets", "events.retransmits"});

    Config one = running;
    one.events.socket_table_size = 1024;
    CHECK(keys_needing_restart(running, one) ==
          std::vector<std::string>{"events.socket_table_size"});
}

// yaml-cpp recurses per nesting level; parse_config refuses absurd input before it does.
TEST_CASE("config errors: size and nesting bounds protect the YAML parser") {
    CHECK(error_of(std::string(100000, '[')) ==
          "x.yaml:1:33: nested more than 32 levels deep; a configuration nests at most 4");
    CHECK(error_of("web: " + std::string(40, '{')) ==
          "x.yaml:1:38: nested more than 32 levels deep; a configuration nests at most 4");
    std::string dashes;
    for (int i = 0; i < 50; ++i) dashes += "- ";
    CHECK(error_of("web:\n" + dashes + "x\n") ==
          "x.yaml:2:65: nested more than 32 levels deep; a configuration nests at most 4");
    CHECK(error_of("web:\n" + std::string(200, ' ') + "x: 1\n") ==
          "x.yaml:2:129: indented more than 128 columns; a configuration nests at most 4 levels");
    // Closed brackets do not add up: many small flow lists stay valid.
    std::string ports = "filters:\n  local_ports: [";
    for (int port = 1; port <= 1024; ++port) ports += (port > 1 ? ", " : "") + std::to_string(port);
    CHECK(error_of(ports + "]\n") == "no error");
    CHECK(error_of(std::string((1u << 20) + 1, '#')) ==
          "x.yaml: the file is 1048577 bytes, more than the 1048576 a configuration may have");
}

// Regressions found by tests/fuzz/config_fuzz (inputs in tests/fuzz/corpus/config/): yaml-cpp
// 0.7's LoadAll looped forever, allocating, on a document starting with a stray ",".
TEST_CASE("config errors: a stray comma is an error, not a hang") {
    const std::string message = "invalid YAML: unexpected token (a \",\" outside [ ] or { }?)";
    CHECK(error_of(",\n") == "x.yaml:1:1: " + message);
    CHECK(error_of(", \xce\xbb") == "x.yaml:1:1: " + message);
    // The fuzzer's input had invalid UTF-8 after the comma, which is now refused first.
    CHECK(error_of(", \xce\xdd\xa2\xbd") ==
          "x.yaml:1:3: invalid YAML: invalid UTF-8 byte \\xce (a configuration is UTF-8 text)");
    CHECK(error_of("- a\n,") == "x.yaml:2:1: " + message);
    CHECK(error_of("[1],") == "x.yaml:1:4: " + message);
    CHECK(error_of("\"x\",") == "x.yaml:1:4: " + message);
    auto regression = [](const char* name) {
        std::ifstream in(std::string(TCPSTATESD_SOURCE_DIR "/tests/fuzz/corpus/config/") + name,
                         std::ios::binary);
        REQUIRE(in);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    // regression-utf16-stray-comma.yaml has NUL bytes: yaml-cpp decodes it as UTF-16 and its
    // marks count decoded characters, which once made our message index past the text.
    for (const char* name :
         {"regression-stray-comma.yaml", "regression-stray-comma-utf8.yaml",
          "regression-stray-comma-in-list.yaml", "regression-utf16-stray-comma.yaml"})
        CHECK(error_of(regression(name)).find("invalid YAML") != std::string::npos);
    // A second document after a first one is still reported as such.
    CHECK(error_of("web: {}\n---\n,") ==
          "x.yaml:2:1: a second YAML document; the configuration is one document");
}

// Inputs that once hung or crashed a YAML parser, and the bytes no text editor writes: each is
// refused by the one YAML loading path (daemon/config/yaml_document.cpp) with its position.
TEST_CASE("config errors: stray flow tokens, a second document, NUL and invalid UTF-8") {
    const std::string unexpected = "invalid YAML: unexpected token (a \",\" outside [ ] or { }?)";
    const std::string utf8 = " (a configuration is UTF-8 text)";
    CHECK(error_of(",") == "x.yaml:1:1: " + unexpected);
    CHECK(error_of("]") == "x.yaml:1:1: invalid YAML: illegal flow end");
    CHECK(error_of("}") == "x.yaml:1:1: invalid YAML: illegal flow end");
    CHECK(error_of("- ,") == "x.yaml:1:3: invalid YAML: end of sequence not found");
    CHECK(error_of("? ,") == "x.yaml:1:3: invalid YAML: end of map not found");
    CHECK(error_of("web: {}\n---\n") ==
          "x.yaml:2:1: a second YAML document; the configuration is one document");
    CHECK(error_of(std::string("web: {}\n\0", 9)) ==
          "x.yaml:2:1: invalid YAML: control character \\x00" + utf8);
    CHECK(error_of(std::string("web:\n  a\0b: 1\n", 14)) ==
          "x.yaml:2:4: invalid YAML: control character \\x00" + utf8);
    CHECK(error_of("web: {}\x7f") == "x.yaml:1:8: invalid YAML: control character \\x7f" + utf8);
    CHECK(error_of("web:\n  \xff\xfe: 1\n") ==
          "x.yaml:2:3: invalid YAML: invalid UTF-8 byte \\xff" + utf8);
    // A UTF-16 file: its byte order mark.
    CHECK(error_of("\xff\xfew\0e\0b\0") ==
          "x.yaml:1:1: invalid YAML: invalid UTF-8 byte \\xff" + utf8);
    CHECK(error_of("logging:\n  level: \xc3\x28\n") ==
          "x.yaml:2:10: invalid YAML: invalid UTF-8 byte \\xc3" + utf8);
    // Columns count bytes, as yaml-cpp's do (web_config_test.cpp checks theirs).
    CHECK(error_of("# \xc3\xa9\x01") == "x.yaml:1:5: invalid YAML: control character \\x01" + utf8);
}

TEST_CASE("config files: larger than 1 MiB, or not a regular file, is refused unread") {
    TempDir dir;
    const std::string big = dir.write("big.yaml", std::string((1u << 20) + 1, '#'));
    CHECK_THROWS_WITH(load_config_file(big),
                      "cannot read configuration file " + big + ": larger than 1048576 bytes");
    // A sparse 1 GiB file: read whole, it would take 1 GiB of memory.
    const std::string sparse = dir.write("sparse.yaml", "");
    std::filesystem::resize_file(sparse, 1u << 30);
    CHECK_THROWS_WITH(load_config_file(sparse),
                      "cannot read configuration file " + sparse + ": larger than 1048576 bytes");
    CHECK_THROWS_WITH(load_config_file("/dev/zero"),
                      "cannot open configuration file /dev/zero: not a regular file");
    // A FIFO without a writer would block a plain open() forever.
    const std::string fifo = dir.path() + "/fifo.yaml";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(load_config_file(fifo),
                      "cannot open configuration file " + fifo + ": not a regular file");
    // Exactly at the bound is still read (and here a valid, empty document).
    const std::string full = dir.write("full.yaml", std::string(1u << 20, '#'));
    CHECK(load_config_file(full).web == WebConfig{});
}

TEST_CASE("config errors: listen addresses that would bind the same socket") {
    CHECK(error_of("web:\n  listen_addresses: [\"127.0.0.1:9981\", \"127.0.0.1:09981\"]\n") ==
          "x.yaml:2:40: web.listen_addresses: \"127.0.0.1:09981\" overlaps \"127.0.0.1:9981\": "
          "both cannot listen on the same port (first at line 2, column 22)");
    CHECK(error_of("web:\n  listen_addresses: [\":9982\", \"0.0.0.0:9982\"]\n") ==
          "x.yaml:2:31: web.listen_addresses: \"0.0.0.0:9982\" overlaps \":9982\": both cannot "
          "listen on the same port (first at line 2, column 22)");
    CHECK(error_of("web:\n  listen_addresses: [\"[::]:80\", \"[0::1]:80\"]\n") ==
          "x.yaml:2:33: web.listen_addresses: \"[0::1]:80\" overlaps \"[::]:80\": both cannot "
          "listen on the same port (first at line 2, column 22)");
    std::string many = "web:\n  listen_addresses:\n";
    for (int port = 1; port <= 17; ++port)
        many += "    - \"127.0.0.1:" + std::to_string(port) + "\"\n";
    CHECK(error_of(many) == "x.yaml:19:7: web.listen_addresses: more than 16 listen addresses");
    CHECK(parse_config("web:\n  listen_addresses: [\"0.0.0.0:80\", \"[::]:80\", \"127.0.0.1:81\", "
                       "\"127.0.0.2:81\"]\n",
                       "x")
              .web.listen_addresses.size() == 4);
}

// The rule is the kernel's: two addresses overlap exactly when the second cannot be bound and
// listened on while the first listens (both with SO_REUSEADDR, as the server binds them).
TEST_CASE("listen addresses: overlap as the kernel sees it") {
    const uint16_t port = [] {
        const Fd probe = listen_on(parse_listen_address(":0", PortZero::Allowed));
        return local_port(probe);
    }();
    const std::string p = std::to_string(port);
    const std::vector<std::string> addresses = {":" + p,          "0.0.0.0:" + p, "127.0.0.1:" + p,
                                                "127.0.0.2:" + p, "[::]:" + p,    "[::1]:" + p};
    for (const auto& first : addresses) {
        for (const auto& second : addresses) {
            if (first == second) continue;
            INFO(first << " then " << second);
            const ListenAddress a = parse_listen_address(first), b = parse_listen_address(second);
            const Fd held = listen_on(a);
            bool kernel_refused = false;
            try {
                listen_on(b);
            } catch (const HttpError& e) {
                INFO(e.what());
                REQUIRE(std::string(e.what()).find("Address already in use") != std::string::npos);
                kernel_refused = true;
            }
            CHECK(listen_addresses_overlap(a, b) == kernel_refused);
            CHECK(listen_addresses_overlap(b, a) == kernel_refused);
        }
    }
}

TEST_CASE("config errors: telemetry paths no client could reach") {
    const std::string unreachable =
        "web.telemetry_path: expected a path without empty, \".\" or \"..\" segments (clients "
        "normalize them away, so none could reach it), got ";
    CHECK(error_of("web:\n  telemetry_path: /metrics/../-/ready\n") ==
          "x.yaml:2:19: " + unreachable + "\"/metrics/../-/ready\"");
    CHECK(error_of("web:\n  telemetry_path: //metrics\n") ==
          "x.yaml:2:19: " + unreachable + "\"//metrics\"");
    CHECK(error_of("web:\n  telemetry_path: /./metrics\n") ==
          "x.yaml:2:19: " + unreachable + "\"/./metrics\"");
    CHECK(error_of("web:\n  telemetry_path: /a/..\n") ==
          "x.yaml:2:19: " + unreachable + "\"/a/..\"");
    CHECK(error_of("web:\n  telemetry_path: /" + std::string(900 * 1024, 'm') + "\n") ==
          "x.yaml:2:19: web.telemetry_path: expected a path of at most 256 characters, got 921601");
    CHECK(parse_config("web:\n  telemetry_path: /metrics/\n", "x").web.telemetry_path ==
          "/metrics/");
    CHECK(parse_config("web:\n  telemetry_path: /a.b/..c/.d\n", "x").web.telemetry_path ==
          "/a.b/..c/.d");
}

TEST_CASE("config errors: a quoted boolean is a string, as a quoted number is") {
    CHECK(error_of("events:\n  resets: \"true\"\n") ==
          "x.yaml:2:11: events.resets: expected one of false, true, got the quoted string "
          "\"true\" (write true and false without quotes)");
    CHECK(error_of("events:\n  retransmits: 'false'\n") ==
          "x.yaml:2:16: events.retransmits: expected one of false, true, got the quoted string "
          "\"false\" (write true and false without quotes)");
    CHECK_FALSE(parse_config("events:\n  resets: false\n", "x").events.resets);
}

TEST_CASE("config errors: bucket bounds must read back exactly from the exposition") {
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [1e-320, 1e-310, 1, 1.0000000000000002, "
                   "1.0000001, 123456789012345678]\n") ==
          "x.yaml:2:49: metrics.duration_buckets_seconds: bucket 1.0000000000000002 cannot be "
          "written exactly in the text exposition, which writes 1 (use at most 15 significant "
          "digits)");
    CHECK(error_of("metrics:\n  duration_buckets_seconds: [123456789012345678]\n") ==
          "x.yaml:2:30: metrics.duration_buckets_seconds: bucket 123456789012345678 cannot be "
          "written exactly in the text exposition, which writes 1.234567890123457e+17 (use at "
          "most 15 significant digits)");
    CHECK(
        parse_config("metrics:\n  duration_buckets_seconds: [1e-320, 1e-310, 1, 1.000000000000001, "
                     "1.0000001, 123456789012345000]\n",
                     "x")
            .metrics.duration_buckets.size() == 6);
}

// What a scraper reads: every accepted bound appears as its own `le`, which parses back into
// exactly the configured bound.
TEST_CASE("config: accepted bucket bounds appear in the exposition as distinct, exact le values") {
    const std::vector<double> bounds =
        parse_config(
            "metrics:\n  duration_buckets_seconds: [1e-320, 1e-310, 2.5e-5, 0.1, 0.3, 1, "
            "1.000000000000001, 1.0000001, 123456789012345000, 1e300]\n",
            "x")
            .metrics.duration_buckets;
    prometheus::Registry registry;
    prometheus::BuildHistogram().Name("h").Register(registry).Add({}, bounds);
    const std::string text = prometheus_text(registry.Collect());
    std::vector<double> read_back;
    for (size_t at = text.find("le=\""); at != std::string::npos; at = text.find("le=\"", at)) {
        at += 4;
        const std::string le = text.substr(at, text.find('"', at) - at);
        if (le != "+Inf") read_back.push_back(std::strtod(le.c_str(), nullptr));
    }
    CHECK(read_back == bounds);
}

TEST_CASE("config errors: events.btf_path must not be a FIFO, device or directory") {
    TempDir dir;
    const std::string fifo = dir.path() + "/btf.fifo";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(error_of("events:\n  btf_path: " + fifo + "\n") ==
          "x.yaml:2:13: events.btf_path: expected a BTF file, got \"" + fifo +
              "\", which is not a regular file (a FIFO or device could block the start for ever)");
    CHECK(error_of("events:\n  btf_path: " + dir.path() + "\n") ==
          "x.yaml:2:13: events.btf_path: expected a BTF file, got \"" + dir.path() +
              "\", which is a directory (a FIFO or device could block the start for ever)");
    // A missing file is reported when the program loads, with the loader's reason.
    CHECK(parse_config("events:\n  btf_path: " + dir.path() + "/absent\n", "x").events.btf_path ==
          dir.path() + "/absent");
}

// The daemon's configuration: one YAML file, strictly validated. Every error names the file,
// the 1-based line and column of the offending key or value, the key's dotted path, what was
// expected and what was found. docs/configuration.md is the reference for the keys.
#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/listen_address.hpp"
#include "kernel/bpf_program.hpp"
#include "kernel/native_bounds.hpp"
#include "kernel/transport.hpp"
#include "labels/labels_config.hpp"
#include "process/logging.hpp"

namespace tcpstatesd {

// The 1-2.5-5 series per decade from 10 µs to 2.5 ks, then 1 h: 27 buckets that resolve
// both a loopback handshake and a long-lived connection.
std::vector<double> default_duration_buckets();
// The 1-2.5-5 series per decade from 10 µs to 5 s: 18 buckets from a loopback handshake to
// one whose SYN-ACK was sent again (the first retransmission after 1 s).
std::vector<double> default_handshake_rtt_buckets();

// The HTTP endpoint's settings and their defaults (HttpServerOptions has none of its own).
struct WebConfig {
    std::vector<ListenAddress> listen_addresses{parse_listen_address(":9977")};
    std::string telemetry_path = "/metrics";
    unsigned max_threads = 4;

    bool operator==(const WebConfig&) const = default;
};

struct EventsConfig {
    Transport transport = Transport::Auto;
    uint32_t ring_buffer_bytes = kDefaultRingBufferBytes;
    uint32_t perf_buffer_pages = kDefaultPerfBufferPages;
    // Unset: kDefaultSocketTableSize, or kDefaultPreallocatedSocketTableSize with btf_path.
    std::optional<uint32_t> socket_table_size;
    std::string btf_path;  // empty: the kernel's own (BpfOptions::btf_path)
    bool resets = true;    // BpfOptions::resets
    bool retransmits = true;

    bool operator==(const EventsConfig&) const = default;
};

// A walk past half a CPU would compete with the traffic it observes.
constexpr uint32_t kMaxSocketWalkCpuPercent = 50;

struct MetricsConfig {
    std::vector<double> duration_buckets = default_duration_buckets();
    std::vector<double> handshake_rtt_buckets = default_handshake_rtt_buckets();
    // The share of one CPU the background walk of the sockets may take (docs/configuration.md).
    uint32_t socket_walk_cpu_percent = 1;  // 1..kMaxSocketWalkCpuPercent
    NativeHistogramSettings native_histograms;
    // Exemplars on the duration histograms (docs/metrics.md, "Exemplars").
    bool exemplars = true;

    bool operator==(const MetricsConfig&) const = default;
};

struct LoggingConfig {
    spdlog::level::level_enum level = spdlog::level::info;
    LogFormat format = LogFormat::Text;

    bool operator==(const LoggingConfig&) const = default;
};

struct Config {
    WebConfig web;
    EventsConfig events;
    EventFilters filters;  // ports sorted, without duplicates
    MetricsConfig metrics;
    LabelsConfig labels;
    LoggingConfig logging;
    std::string source = "built-in defaults";  // the file it came from

    bool operator==(const Config&) const = default;
};

class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses and validates one YAML document. An empty document means all defaults. Throws
// ConfigError "source_name:line:column: what is wrong".
Config parse_config(std::string_view yaml_text, const std::string& source_name);

// Reads and parses a file. A missing or unreadable file is a ConfigError naming the path
// and the reason.
Config load_config_file(const std::string& path);

constexpr const char* kDefaultConfigPath = "/etc/tcpstatesd/tcpstatesd.yaml";

// With a path: that file, which must exist. Without: default_path if it exists, else the
// built-in defaults (source "built-in defaults").
Config load_config(const std::optional<std::string>& path,
                   const std::string& default_path = kDefaultConfigPath);

// The dotted keys that differ between the two configs and that a reload cannot apply:
// everything under events (new kernel objects) and everything under web (the HTTP server's
// sockets, threads and handlers are set up once). Filters, buckets, labels and logging are
// live.
std::vector<std::string> keys_needing_restart(const Config& running, const Config& next);

// Long enough for any sensible path, short enough for the request line to fit the HTTP
// server's per-connection memory many times over.
constexpr size_t kMaxTelemetryPathLength = 256;

// The rules behind web.telemetry_path, events.btf_path and logging.level
// (web.listen_addresses: see listen_address.hpp), shared with the command-line overrides. Each
// throws std::invalid_argument saying what is expected.
void validate_telemetry_path(std::string_view path);
void validate_btf_path(const std::string& path);
spdlog::level::level_enum parse_log_level(std::string_view text);

}  // namespace tcpstatesd

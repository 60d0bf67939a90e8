#include "config/config.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <map>

#include "config/port_list.hpp"
#include "config/web_config.hpp"
#include "config/yaml_document.hpp"
#include "config/yaml_reader.hpp"
#include "exposition/text_syntax.hpp"
#include "tcpstates.h"

namespace tcpstatesd {

namespace {

using namespace yaml_reader;

constexpr uint32_t kMaxBuckets = 64;
constexpr const char* kLogLevels = "one of trace, debug, info, warn, error, critical, off";

std::vector<ListenAddress> listen_addresses(const Reader& r, const Field& field) {
    const std::string what = "a non-empty list of listen addresses";
    std::vector<ListenAddress> addresses;
    std::vector<YAML::Mark> marks;  // marks[i]: where addresses[i] is written
    for (const auto& item : r.nonempty_sequence(field, what)) {
        if (addresses.size() == kMaxListenAddresses)
            r.fail(item, "more than " + std::to_string(kMaxListenAddresses) + " listen addresses");
        const ListenAddress address =
            r.checked(item, "a listen address such as \":9977\"",
                      [](std::string_view text) { return parse_listen_address(text); });
        // Compared as the kernel binds them, so that "127.0.0.1:09981" meets "127.0.0.1:9981"
        // and ":9982" meets "0.0.0.0:9982" here rather than as EADDRINUSE at start.
        for (size_t i = 0; i < addresses.size(); ++i) {
            if (!listen_addresses_overlap(addresses[i], address)) continue;
            r.fail(item, quoted(address.text) +
                             (address.text == addresses[i].text
                                  ? " is listed twice"
                                  : " overlaps " + quoted(addresses[i].text) +
                                        ": both cannot listen on the same port") +
                             " (first at " + position(marks[i]) + ")");
        }
        addresses.push_back(address);
        marks.push_back(item.mark());
    }
    return addresses;
}

int families(const Reader& r, const Field& field) {
    bool ipv4 = false, ipv6 = false;
    for (const auto& item : r.nonempty_sequence(field, "a non-empty list of ipv4, ipv6")) {
        bool& flag = r.choice(item, {"ipv4", "ipv6"}) == 0 ? ipv4 : ipv6;
        if (flag) r.fail(item, quoted(item.node.Scalar()) + " is listed twice");
        flag = true;
    }
    return ipv4 && ipv6 ? 0 : ipv4 ? AF_INET : AF_INET6;
}

// A list of ports and ranges. With `listening`, the item "listening" is allowed as well and
// sets *listening.
std::vector<uint16_t> ports(const Reader& r, const Field& field, bool* listening = nullptr) {
    const std::string what = listening
                                 ? "a port from 1 to 65535, a range \"first-last\" or listening"
                                 : "a port from 1 to 65535 or a range \"first-last\"";
    std::map<uint16_t, YAML::Mark> seen;
    if (listening) *listening = false;
    for (const auto& item : r.sequence(field, "a list of ports and port ranges")) {
        const std::string& text = r.scalar(item, what);
        if (listening && text == "listening") {
            if (*listening) r.fail(item, "\"listening\" is listed twice");
            *listening = true;
            continue;
        }
        if (text.find(',') != std::string::npos)
            r.fail(item, "expected " + what + ", got " + quoted(text) +
                             " (write one port or range per list item)");
        std::vector<uint16_t> expanded;
        try {
            expanded = parse_port_list(text);
        } catch (const std::invalid_argument& e) {
            r.fail(item, std::string(e.what()) + (listening ? " (or the word listening)" : ""));
        }
        for (uint16_t port : expanded) {
            auto [first, inserted] = seen.emplace(port, item.mark());
            if (!inserted)
                r.fail(item, "port " + std::to_string(port) + " is listed twice (first at " +
                                 position(first->second) + ")");
        }
        if (!listening && seen.size() > TCPSTATES_MAX_FILTER_PORTS)
            r.fail(item, "more than " + std::to_string(TCPSTATES_MAX_FILTER_PORTS) +
                             " ports, the kernel filter's capacity");
    }
    std::vector<uint16_t> sorted;
    sorted.reserve(seen.size());
    for (const auto& entry : seen) sorted.push_back(entry.first);
    return sorted;
}

std::vector<double> buckets(const Reader& r, const Field& field) {
    const std::string what = "a finite number of seconds greater than 0";
    const auto items =
        r.nonempty_sequence(field, "a non-empty list of bucket upper bounds in seconds");
    std::vector<double> bounds;  // bounds[i] comes from items[i]
    for (const auto& item : items) {
        auto value = parse_real(r.number_text(item, what));
        if (!value || !std::isfinite(*value) || *value <= 0) r.expected(item, what);
        // A scraper must read back the very bound that is counted against: otherwise two
        // bounds could print as the same `le` and a bucket would not mean what it says.
        const std::string printed = exposition_number(*value);
        if (parse_real(printed) != value)
            r.fail(item, "bucket " + item.node.Scalar() +
                             " cannot be written exactly in the text exposition, which writes " +
                             printed + " (use at most 15 significant digits)");
        if (bounds.size() == kMaxBuckets)
            r.fail(item, "more than " + std::to_string(kMaxBuckets) + " buckets");
        auto same = std::find(bounds.begin(), bounds.end(), *value);
        if (same != bounds.end())
            r.fail(item, "bucket " + item.node.Scalar() + " is listed twice (first at " +
                             position(items[same - bounds.begin()].mark()) + ")");
        if (!bounds.empty() && *value < bounds.back()) {
            const Field& previous = items[bounds.size() - 1];
            r.fail(item, "buckets must be increasing: " + item.node.Scalar() + " follows " +
                             previous.node.Scalar() + " (at " + position(previous.mark()) + ")");
        }
        bounds.push_back(*value);
    }
    return bounds;
}

// The metric families a label is put on: a list of their names (kLabelledFamilyNames), those
// the cgroup label may go on for it.
LabelledFamilies labelled_families(const Reader& r, const Field& field, bool cgroup) {
    LabelledFamilies families;
    std::vector<std::string_view> names;
    std::vector<bool LabelledFamilies::*> flags;
    for (const auto& [name, flag] : kLabelledFamilyNames)
        if (!cgroup || cgroup_may_label(flag)) {
            names.push_back(name);
            flags.push_back(flag);
        }
    for (const auto& item : r.sequence(field, "a list of " + join(names))) {
        bool& flag = families.*flags[r.choice(item, names)];
        if (flag) r.fail(item, quoted(item.node.Scalar()) + " is listed twice");
        flag = true;
    }
    return families;
}

using Keys = std::vector<Reader::Key>;

Keys web_keys(const Reader& r, WebConfig& web) {
    return {
        {"listen_addresses",
         [&](const Field& f) { web.listen_addresses = listen_addresses(r, f); }},
        {"telemetry_path",
         [&](const Field& f) {
             r.checked(f, "a path starting with \"/\"", validate_telemetry_path);
             web.telemetry_path = f.node.Scalar();
         }},
        {"max_threads",
         [&](const Field& f) {
             web.max_threads = static_cast<unsigned>(r.whole(f, 1, kHttpConnectionLimit));
         }},
    };
}

Keys events_keys(const Reader& r, EventsConfig& events) {
    return {
        {"transport",
         [&](const Field& f) {
             std::vector<std::string_view> names;
             for (const auto& [transport, name] : kTransportNames) names.push_back(name);
             events.transport = kTransportNames[r.choice(f, names)].first;
         }},
        {"ring_buffer_bytes",
         [&](const Field& f) {
             events.ring_buffer_bytes = static_cast<uint32_t>(r.power_of_two(f, 4096, 1u << 30));
         }},
        {"perf_buffer_pages",
         [&](const Field& f) {
             events.perf_buffer_pages = static_cast<uint32_t>(r.power_of_two(f, 1, 4096));
         }},
        {"socket_table_size",
         [&](const Field& f) {
             events.socket_table_size = static_cast<uint32_t>(r.whole(f, 1, 1u << 24));
         }},
        {"btf_path",
         [&](const Field& f) {
             r.scalar(f, "a BTF file path, or \"\" for the kernel's own");
             if (!f.node.Scalar().empty()) r.checked(f, "a BTF file path", validate_btf_path);
             events.btf_path = f.node.Scalar();
         }},
        {"resets", [&](const Field& f) { events.resets = r.boolean(f); }},
        {"retransmits", [&](const Field& f) { events.retransmits = r.boolean(f); }},
    };
}

Keys filters_keys(const Reader& r, EventFilters& filters) {
    return {
        {"families", [&](const Field& f) { filters.family = families(r, f); }},
        {"local_ports", [&](const Field& f) { filters.local_ports = ports(r, f); }},
        {"remote_ports", [&](const Field& f) { filters.remote_ports = ports(r, f); }},
    };
}

Keys metrics_keys(const Reader& r, MetricsConfig& metrics) {
    return {
        {"duration_buckets_seconds",
         [&](const Field& f) { metrics.duration_buckets = buckets(r, f); }},
        {"handshake_rtt_buckets_seconds",
         [&](const Field& f) { metrics.handshake_rtt_buckets = buckets(r, f); }},
        {"socket_walk_cpu_percent",
         [&](const Field& f) {
             metrics.socket_walk_cpu_percent =
                 static_cast<uint32_t>(r.whole(f, 1, kMaxSocketWalkCpuPercent));
         }},
        {"native_histograms",
         [&](const Field& f) {
             NativeHistogramSettings& native = metrics.native_histograms;
             r.mapping(f,
                       {
                           {"enabled", [&](const Field& g) { native.enabled = r.boolean(g); }},
                           {"schema",
                            [&](const Field& g) {
                                native.schema = static_cast<int32_t>(r.integer(
                                    g, TCPSTATES_NATIVE_MIN_SCHEMA, TCPSTATES_NATIVE_MAX_SCHEMA));
                            }},
                           {"max_buckets",
                            [&](const Field& g) {
                                native.max_buckets = static_cast<uint32_t>(
                                    r.whole(g, kMinNativeMaxBuckets, kMaxNativeMaxBuckets));
                            }},
                       });
         }},
        {"exemplars", [&](const Field& f) { metrics.exemplars = r.boolean(f); }},
    };
}

Keys labels_keys(const Reader& r, LabelsConfig& labels) {
    const auto max_values = [&r](const Field& f) {
        return static_cast<uint32_t>(r.whole(f, 1, kMaxLabelValues));
    };
    return {
        {"max_series",
         [&](const Field& f) {
             labels.max_series = static_cast<uint32_t>(r.whole(f, 0, kMaxLabelledSeries));
         }},
        {"port",
         [&, max_values](const Field& f) {
             PortLabelConfig& port = labels.port;
             r.mapping(
                 f,
                 {
                     {"families",
                      [&](const Field& g) { port.families = labelled_families(r, g, false); }},
                     {"ports", [&](const Field& g) { port.ports = ports(r, g, &port.listening); }},
                     {"max_values",
                      [&, max_values](const Field& g) { port.max_values = max_values(g); }},
                 });
         }},
        {"cgroup",
         [&, max_values](const Field& f) {
             CgroupLabelConfig& cgroup = labels.cgroup;
             r.mapping(
                 f, {
                        {"families",
                         [&](const Field& g) { cgroup.families = labelled_families(r, g, true); }},
                        {"max_values",
                         [&, max_values](const Field& g) { cgroup.max_values = max_values(g); }},
                    });
         }},
    };
}

Keys logging_keys(const Reader& r, LoggingConfig& logging) {
    return {
        {"level",
         [&](const Field& f) { logging.level = r.checked(f, kLogLevels, parse_log_level); }},
        {"format",
         [&](const Field& f) {
             const bool text = r.choice(f, {"text", "json"}) == 0;
             logging.format = text ? LogFormat::Text : LogFormat::Json;
         }},
    };
}

Config parse_document(const Reader& r, const YAML::Node& root, const std::string& source) {
    Config config;
    config.source = source;
    auto section = [&r](std::string_view name, Keys keys) {
        return Reader::Key{name,
                           [&r, keys = std::move(keys)](const Field& f) { r.mapping(f, keys); }};
    };
    r.mapping(Field{"", root, root.Mark()}, {
                                                section("web", web_keys(r, config.web)),
                                                section("events", events_keys(r, config.events)),
                                                section("filters", filters_keys(r, config.filters)),
                                                section("metrics", metrics_keys(r, config.metrics)),
                                                section("labels", labels_keys(r, config.labels)),
                                                section("logging", logging_keys(r, config.logging)),
                                            });
    return config;
}

}  // namespace

std::vector<double> default_duration_buckets() {
    return {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
            1e-2, 2.5e-2, 5e-2, 1e-1, 2.5e-1, 5e-1, 1,    2.5,    5,
            10,   25,     50,   100,  250,    500,  1000, 2500,   3600};
}

std::vector<double> default_handshake_rtt_buckets() {
    return {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
            1e-2, 2.5e-2, 5e-2, 1e-1, 2.5e-1, 5e-1, 1,    2.5,    5};
}

void validate_telemetry_path(std::string_view path) {
    if (path.empty() || path.front() != '/')
        throw std::invalid_argument("expected a path starting with \"/\", got " + quoted(path));
    if (path == "/")
        throw std::invalid_argument("expected a path other than \"/\" (the landing page), got " +
                                    quoted(path));
    if (path.starts_with("/-/"))
        throw std::invalid_argument(
            "expected a path outside \"/-/\" (reserved for /-/healthy and /-/ready), got " +
            quoted(path));
    // The HTTP server matches the decoded path, so '%' could never match; '?' and '#' end
    // the path in a URL.
    if (path.size() > kMaxTelemetryPathLength)
        throw std::invalid_argument("expected a path of at most " +
                                    std::to_string(kMaxTelemetryPathLength) + " characters, got " +
                                    std::to_string(path.size()));
    for (char c : path)
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '%')
            throw std::invalid_argument(
                "expected a path of printable ASCII without spaces, \"?\", \"#\" or \"%\", got " +
                quoted(path));
    // The server compares the path a client sends as it is, and clients normalize "//", "." and
    // ".." segments away before sending (RFC 3986 5.2.4): such a path could never be scraped.
    for (size_t start = 1; start <= path.size();) {
        const size_t end = std::min(path.find('/', start), path.size());
        const std::string_view segment = path.substr(start, end - start);
        if ((segment.empty() && end < path.size()) || segment == "." || segment == "..")
            throw std::invalid_argument(
                "expected a path without empty, \".\" or \"..\" segments (clients normalize "
                "them away, so none could reach it), got " +
                quoted(path));
        start = end + 1;
    }
}

void validate_btf_path(const std::string& path) {
    struct stat st {};
    // A missing or unreadable file is reported when the program loads, naming the cause.
    if (::stat(path.c_str(), &st) != 0) return;
    if (!S_ISREG(st.st_mode))
        throw std::invalid_argument("expected a BTF file, got " + quoted(path) + ", which is " +
                                    (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file") +
                                    " (a FIFO or device could block the start for ever)");
}

spdlog::level::level_enum parse_log_level(std::string_view text) {
    // spdlog's own names ("warning", "err") are not accepted: one spelling per level.
    static const std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
        {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
        {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
        {"off", spdlog::level::off},
    };
    for (const auto& [name, level] : kLevels)
        if (name == text) return level;
    throw std::invalid_argument(std::string("expected ") + kLogLevels + ", got " + quoted(text));
}

Config parse_config(std::string_view yaml_text, const std::string& source_name) {
    const YAML::Node document = load_yaml_document(yaml_text, source_name, "the configuration");
    Reader reader(source_name);
    try {
        return parse_document(reader, document, source_name);
    } catch (const YAML::Exception& e) {
        // Node access does not throw for the shapes checked above; this is a safety net
        // so that no yaml-cpp error escapes without the file name.
        reader.fail(e.mark, e.msg);
    }
}

Config load_config_file(const std::string& path) {
    return parse_config(read_config_file(path, "configuration file"), path);
}

Config load_config(const std::optional<std::string>& path, const std::string& default_path) {
    if (path) return load_config_file(*path);
    struct stat st;
    if (::stat(default_path.c_str(), &st) != 0 && errno == ENOENT) return Config{};
    return load_config_file(default_path);
}

std::vector<std::string> keys_needing_restart(const Config& running, const Config& next) {
    std::vector<std::string> keys;
    auto check = [&](bool changed, const char* key) {
        if (changed) keys.emplace_back(key);
    };
    check(running.web.listen_addresses != next.web.listen_addresses, "web.listen_addresses");
    check(running.web.telemetry_path != next.web.telemetry_path, "web.telemetry_path");
    check(running.web.max_threads != next.web.max_threads, "web.max_threads");
    check(running.events.transport != next.events.transport, "events.transport");
    check(running.events.ring_buffer_bytes != next.events.ring_buffer_bytes,
          "events.ring_buffer_bytes");
    check(running.events.perf_buffer_pages != next.events.perf_buffer_pages,
          "events.perf_buffer_pages");
    check(running.events.socket_table_size != next.events.socket_table_size,
          "events.socket_table_size");
    check(running.events.btf_path != next.events.btf_path, "events.btf_path");
    check(running.events.resets != next.events.resets, "events.resets");
    check(running.events.retransmits != next.events.retransmits, "events.retransmits");
    return keys;
}

}  // namespace tcpstatesd

// The configuration of the optional `port` and `cgroup` labels (labels.* in the YAML file,
// docs/configuration.md): which metric families carry each, its values, and the cap on the
// series they make.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace tcpstatesd {

// The metric families a label can be put on.
struct LabelledFamilies {
    bool transitions = false;      // tcpstates_transitions_total
    bool state_durations = false;  // tcpstates_state_duration_seconds
    bool sockets = false;          // tcpstates_sockets
    bool closes = false;           // tcpstates_closes_total
    bool resets = false;           // tcpstates_resets_total
    bool retransmits = false;      // tcpstates_retransmits_total
    bool state_oldest = false;     // tcpstates_state_oldest_seconds (the port label only)
    // tcpstates_listen_queue_length, tcpstates_listen_queue_limit, tcpstates_listen_drops_total
    // (the port label only)
    bool listen_queues = false;
    bool ephemeral_ports = false;  // tcpstates_ephemeral_ports_used_ratio (the port label only)
    bool handshake_rtt = false;    // tcpstates_handshake_rtt_seconds

    bool any() const;
    bool operator==(const LabelledFamilies&) const = default;
};

// Each family's name in the configuration (labels.*.families), and its flag.
inline constexpr std::pair<std::string_view, bool LabelledFamilies::*> kLabelledFamilyNames[] = {
    {"transitions", &LabelledFamilies::transitions},
    {"state_durations", &LabelledFamilies::state_durations},
    {"sockets", &LabelledFamilies::sockets},
    {"closes", &LabelledFamilies::closes},
    {"resets", &LabelledFamilies::resets},
    {"retransmits", &LabelledFamilies::retransmits},
    {"state_oldest", &LabelledFamilies::state_oldest},
    {"listen_queues", &LabelledFamilies::listen_queues},
    {"ephemeral_ports", &LabelledFamilies::ephemeral_ports},
    {"handshake_rtt", &LabelledFamilies::handshake_rtt},
};

// Whether the cgroup label may be put on a family: not on those the walk makes, which knows no
// owner.
constexpr bool cgroup_may_label(bool LabelledFamilies::*flag) {
    return flag != &LabelledFamilies::state_oldest && flag != &LabelledFamilies::listen_queues &&
           flag != &LabelledFamilies::ephemeral_ports;
}

inline bool LabelledFamilies::any() const {
    for (const auto& [name, flag] : kLabelledFamilyNames)
        if (this->*flag) return true;
    return false;
}

struct PortLabelConfig {
    LabelledFamilies families{.transitions = true,
                              .sockets = true,
                              .closes = true,
                              .resets = true,
                              .retransmits = true,
                              .state_oldest = true,
                              .listen_queues = true,
                              .ephemeral_ports = true};
    bool listening = true;        // every port the host listens on
    std::vector<uint16_t> ports;  // and these, sorted
    uint32_t max_values = 64;

    bool operator==(const PortLabelConfig&) const = default;
};

struct CgroupLabelConfig {
    LabelledFamilies families{
        .transitions = true, .closes = true, .resets = true, .retransmits = true};
    uint32_t max_values = 64;

    bool operator==(const CgroupLabelConfig&) const = default;
};

// Label values beyond max_values (each label) and series beyond max_series (all labelled
// families together) are folded into "other". The caps bound the memory a configuration may
// ask for (docs/configuration.md, "labels"): a labelled sample costs about 0.5 KiB at rest
// and 120 bytes of each telemetry body, so 100,000 take about 50 MiB and a 12 MiB body; a
// value costs a few hundred bytes, its series being counted in max_series.
constexpr uint32_t kMaxLabelValues = 10000;
constexpr uint32_t kMaxLabelledSeries = 100000;

struct LabelsConfig {
    PortLabelConfig port;
    CgroupLabelConfig cgroup;
    uint32_t max_series = 1000;

    bool operator==(const LabelsConfig&) const = default;
};

}  // namespace tcpstatesd

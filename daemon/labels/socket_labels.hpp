// The `port` and `cgroup` label values of each transition (labels.* in the configuration,
// docs/metrics.md "Labels"). Runs on the thread that delivers events; per event it does array
// and hash lookups only (cgroup names: see CgroupNames).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "labels/cgroup_names.hpp"
#include "labels/label_values.hpp"
#include "labels/labels_config.hpp"
#include "labels/listening_ports.hpp"
#include "tcpstates.h"

namespace tcpstatesd {

enum class Label { Port, Cgroup };
constexpr Label kLabels[] = {Label::Port, Label::Cgroup};

// The label's name in the exposition and in the self metrics' `label` label.
constexpr std::string_view label_name(Label label) {
    return label == Label::Port ? "port" : "cgroup";
}

// The service port of a transition, or 0 if it has none: the remote port of an actively
// opened socket, the local port of a listener and of its children, and for a socket first
// seen later in its life (origin unknown) whichever of its local and remote port is a service
// port. is_service(port) says whether a port is listed or listened on; a listener's and a
// child's own port is one when `listening` is on.
uint16_t service_port(const tcpstates_transition& transition, bool listening,
                      const std::function<bool(uint16_t)>& is_service);

class SocketLabels {
public:
    static constexpr std::string_view kUnknownCgroup = "unknown";

    struct Values {
        uint32_t port = LabelValues::kOther;
        uint32_t cgroup = LabelValues::kOther;
        bool port_refused = false;  // its value found max_values full
        bool cgroup_refused = false;
        bool admitted = false;  // a new value was admitted
    };
    // A value's index now names another value: every series keyed by it must go.
    using EvictionHandler = std::function<void(Label label, uint32_t index)>;

    SocketLabels(const LabelsConfig& config, CgroupNames& cgroups, ListeningPorts& listening);
    void configure(const LabelsConfig& config);
    void on_eviction(EvictionHandler handler) { on_eviction_ = std::move(handler); }
    // Admits the ports listened on now (up to max_values): at start, so that the gauge's
    // sockets older than the daemon find their service's value.
    void admit_listening_ports();

    Values of(const tcpstates_transition& transition);

    // The gauge's labels of the sockets a detailed walk found. Any thread. A value not yet
    // admitted is admitted if there is room; none is replaced here (that removes series, which
    // the event path's thread owns), so the rest count as "other".
    struct WalkedLabels {
        std::vector<Values> values;                         // per socket
        std::vector<std::string> port_names, cgroup_names;  // by index
    };
    WalkedLabels label_walked(const std::vector<tcpstates_walked_socket>& sockets);
    // Which labels the gauge carries now. Any thread.
    LabelledFamilies port_families() const;
    LabelledFamilies cgroup_families() const;

    std::string_view name(Label label, uint32_t index) const {
        return label == Label::Port ? ports_.name(index) : cgroups_.name(index);
    }
    const LabelValues& values(Label label) const {
        return label == Label::Port ? ports_ : cgroups_;
    }

private:
    static constexpr uint32_t kNotCached = UINT32_MAX;
    static constexpr uint32_t kRefused = UINT32_MAX - 1;  // until the next walk

    void apply(const LabelsConfig& config);
    // Ports neither listed nor listened on at the last walk may have their values replaced.
    void mark_gone_ports();
    void port_value(const tcpstates_transition& transition, Values& values);
    void cgroup_value(uint64_t cgroup_id, Values& values);
    LabelValues::Admission admit_cgroup(uint64_t cgroup_id);
    void sync_with_cgroup_walks();
    uint32_t walked_cgroup_value(uint64_t cgroup_id);
    bool is_service(uint16_t port) const;
    void evicted(Label label, uint32_t index);

    // Held by the event path while it changes anything, and by label_walked.
    mutable std::mutex mutex_;
    LabelsConfig config_;
    CgroupNames& cgroup_names_;
    ListeningPorts& listening_;
    std::array<bool, 65536> listed_{};
    LabelValues ports_;
    LabelValues cgroups_;
    std::array<uint32_t, 65536> port_index_;  // admitted ports' indexes, else kNotCached
    std::unordered_map<uint64_t, uint32_t> cgroup_index_;  // since the last cgroup walk
    uint64_t cgroup_walks_seen_ = 0;
    uint64_t listening_walks_seen_ = 0;
    uint64_t events_ = 0;  // the clock of last use
    EvictionHandler on_eviction_;
};

}  // namespace tcpstatesd

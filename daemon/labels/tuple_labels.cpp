#include "labels/tuple_labels.hpp"

#include <algorithm>
#include <charconv>

namespace tcpstatesd {

namespace {

// Cgroup ids whose names are kept: more than the tables' tuples can name at once; beyond it
// the names are looked up again.
constexpr size_t kMaxNamedCgroups = 65536;

void remember(std::vector<std::string>& refused, std::string_view name) {
    if (std::find(refused.begin(), refused.end(), name) == refused.end())
        refused.emplace_back(name);
}

}  // namespace

TupleLabeler::TupleLabeler(const LabelsConfig& config, CgroupNames& cgroups)
    : config_(config),
      cgroup_names_(cgroups),
      ports_({"other"}, config.port.max_values),
      cgroups_({"other", std::string(kUnknownCgroup)}, config.cgroup.max_values) {}

void TupleLabeler::configure(const LabelsConfig& config) {
    config_ = config;
    ports_.set_limit(config.port.max_values);
    cgroups_.set_limit(config.cgroup.max_values);
}

TupleLabeler::Values TupleLabeler::values(uint16_t port, uint64_t cgroup_id) {
    ++uses_;
    return {port_value(port), cgroup_value(cgroup_id)};
}

uint32_t TupleLabeler::port_value(uint16_t port) {
    if (port == 0) return LabelValues::kOther;
    const std::string name = std::to_string(port);
    const auto admission = ports_.admit(name, uses_, false);
    if (admission.refused) {
        ++refusals_[static_cast<size_t>(Label::Port)];
        remember(refused_ports_, name);
    }
    return admission.index;
}

uint32_t TupleLabeler::cgroup_value(uint64_t cgroup_id) {
    const std::string name = cgroup_name(cgroup_id);
    const auto admission = cgroups_.admit(name, uses_, false);
    if (admission.refused) {
        ++refusals_[static_cast<size_t>(Label::Cgroup)];
        remember(refused_cgroups_, name);
    }
    return admission.index;
}

std::string TupleLabeler::cgroup_name(uint64_t cgroup_id) {
    if (cgroup_id == 0) return std::string(kUnknownCgroup);
    if (auto known = cgroup_ids_.find(cgroup_id); known != cgroup_ids_.end())
        return known->second;
    if (cgroup_ids_.size() >= kMaxNamedCgroups) cgroup_ids_.clear();
    const auto path = cgroup_names_.path(cgroup_id);  // may walk, once per id
    std::string name = path ? cgroup_display_name(*path) : std::string(kUnknownCgroup);
    cgroup_ids_.emplace(cgroup_id, name);
    return name;
}

void TupleLabeler::name_cgroup(uint64_t cgroup_id) {
    cgroup_name(cgroup_id);
}

void TupleLabeler::mark_gone(const uint64_t (&listening_now)[65536 / 64],
                             std::chrono::steady_clock::duration age) {
    ports_.mark_gone([&](std::string_view name) {
        uint16_t port = 0;
        std::from_chars(name.data(), name.data() + name.size(), port);
        const bool listed =
            std::binary_search(config_.port.ports.begin(), config_.port.ports.end(), port);
        const bool listened = (listening_now[port / 64] >> (port % 64)) & 1;
        return !listed && !listened;
    });
    cgroup_names_.refresh(age);
    cgroups_.mark_gone([this](std::string_view name) { return !cgroup_names_.exists(name); });
}

bool TupleLabeler::wants_room() const {
    return (!refused_ports_.empty() && ports_.has_gone()) ||
           (!refused_cgroups_.empty() && cgroups_.has_gone());
}

std::vector<TupleLabeler::Eviction> TupleLabeler::make_room() {
    std::vector<Eviction> evicted;
    for (auto [label, refused] : {std::pair{Label::Port, &refused_ports_},
                                  std::pair{Label::Cgroup, &refused_cgroups_}}) {
        LabelValues& set = label == Label::Port ? ports_ : cgroups_;
        for (const std::string& name : *refused) {
            const auto admission = set.admit(name, uses_, true);
            if (!admission.evicted) continue;
            ++replacements_[static_cast<size_t>(label)];
            evicted.push_back({label, admission.index});
        }
        refused->clear();
    }
    return evicted;
}

}  // namespace tcpstatesd

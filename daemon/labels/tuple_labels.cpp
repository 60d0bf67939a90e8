#include "labels/tuple_labels.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>

namespace tcpstatesd {

namespace {

// Cgroup ids whose names are kept: more than the tables' tuples can name at once; beyond it
// the names are looked up again.
constexpr size_t kMaxNamedCgroups = 65536;
// How often a full cgroup label may walk the cgroup file system to find removed cgroups (else
// nothing would notice them).
constexpr std::chrono::seconds kCgroupRefresh{1};

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

TupleLabeler::Values TupleLabeler::values(uint16_t port, uint64_t cgroup_id,
                                          std::vector<Eviction>* evicted) {
    ++uses_;
    Values values;
    if (port != 0) values.port = admit(Label::Port, std::to_string(port), evicted);
    values.cgroup = admit(Label::Cgroup, cgroup_name(cgroup_id), evicted);
    return values;
}

uint32_t TupleLabeler::admit(Label label, const std::string& name, std::vector<Eviction>* evicted) {
    LabelValues& set = label == Label::Port ? ports_ : cgroups_;
    const bool may_replace = evicted != nullptr;
    auto admission = set.admit(name, uses_, may_replace);
    // Full: a cgroup removed since the last walk may make room, found by walking again.
    if (admission.refused && may_replace && label == Label::Cgroup &&
        cgroup_names_.refresh(kCgroupRefresh)) {
        mark_gone_cgroups();
        admission = set.admit(name, uses_);
    }
    const auto which = static_cast<size_t>(label);
    if (admission.refused) {
        ++refusals_[which];
        refused_[which] = true;
    }
    if (admission.evicted) {
        ++replacements_[which];
        evicted->push_back({label, admission.index});
    }
    return admission.index;
}

std::string TupleLabeler::cgroup_name(uint64_t cgroup_id) {
    if (cgroup_id == 0) return std::string(kUnknownCgroup);
    if (auto known = cgroup_ids_.find(cgroup_id); known != cgroup_ids_.end()) return known->second;
    if (cgroup_ids_.size() >= kMaxNamedCgroups) cgroup_ids_.clear();
    const auto path = cgroup_names_.path(cgroup_id);  // may walk, once per id
    std::string name = path ? cgroup_display_name(*path) : std::string(kUnknownCgroup);
    cgroup_ids_.emplace(cgroup_id, name);
    // A walk (for this id) also tells which cgroups were removed.
    if (cgroup_names_.walks() != cgroup_walks_seen_) mark_gone_cgroups();
    return name;
}

bool TupleLabeler::would_replace(uint16_t port, uint64_t cgroup_id) {
    return (port != 0 && ports_.would_replace(std::to_string(port))) ||
           cgroups_.would_replace(cgroup_name(cgroup_id));
}

void TupleLabeler::name_cgroup(uint64_t cgroup_id) {
    cgroup_name(cgroup_id);
}

void TupleLabeler::mark_gone(const uint64_t (&listening_now)[65536 / 64]) {
    ports_.mark_gone([&](std::string_view name) {
        uint16_t port = 0;
        std::from_chars(name.data(), name.data() + name.size(), port);
        const bool listed =
            std::binary_search(config_.port.ports.begin(), config_.port.ports.end(), port);
        const bool listened = (listening_now[port / 64] >> (port % 64)) & 1;
        return !listed && !listened;
    });
    if (refused_[static_cast<size_t>(Label::Cgroup)] && cgroup_names_.refresh(kCgroupRefresh))
        mark_gone_cgroups();
}

bool TupleLabeler::wants_room() const {
    return (refused_[static_cast<size_t>(Label::Port)] && ports_.has_gone()) ||
           (refused_[static_cast<size_t>(Label::Cgroup)] && cgroups_.has_gone());
}

void TupleLabeler::mark_gone_cgroups() {
    cgroup_walks_seen_ = cgroup_names_.walks();
    cgroups_.mark_gone([this](std::string_view name) { return !cgroup_names_.exists(name); });
}

}  // namespace tcpstatesd

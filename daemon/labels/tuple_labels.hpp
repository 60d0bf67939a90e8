// The `port` and `cgroup` label values of the programs' label tuples (labels.* in the
// configuration, docs/metrics.md "Labels"). A tuple names a service port and an owner's cgroup
// id; this turns them into label values within each label's max_values: a port's number, a
// cgroup's unit or path, or "other" (and "unknown" for a cgroup nobody saw open the socket).
// A value nothing uses any more (a port nobody listens on, a removed cgroup) is marked gone;
// when the set is full, a new value takes the place of the gone one used least recently, and
// the caller drops the gone value's series. Not thread-safe: the caller serializes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "labels/cgroup_names.hpp"
#include "labels/label_values.hpp"
#include "labels/labels_config.hpp"

namespace tcpstatesd {

enum class Label { Port, Cgroup };
constexpr Label kLabels[] = {Label::Port, Label::Cgroup};

// The label's name in the exposition and in the self metrics' `label` label.
constexpr std::string_view label_name(Label label) {
    return label == Label::Port ? "port" : "cgroup";
}

class TupleLabeler {
public:
    static constexpr std::string_view kUnknownCgroup = "unknown";

    struct Values {
        uint32_t port = LabelValues::kOther;
        uint32_t cgroup = LabelValues::kOther;
    };
    // A value whose place a new one took: every series with it must go.
    struct Eviction {
        Label label;
        uint32_t index;
    };

    TupleLabeler(const LabelsConfig& config, CgroupNames& cgroups);
    void configure(const LabelsConfig& config);

    // The values of a tuple's port (0: none) and cgroup id (0: unknown). A value not admitted
    // yet is admitted if there is room, made if need be by replacing a gone value (added to
    // `evicted`) unless `evicted` is null. Looking up a cgroup id seen for the first time may walk
    // the cgroup file system (once per id); a full cgroup label walks it at most once per
    // kCgroupRefresh to find removed cgroups.
    Values values(uint16_t port, uint64_t cgroup_id, std::vector<Eviction>* evicted);
    // Whether values(port, cgroup_id, ...) would replace a gone value.
    bool would_replace(uint16_t port, uint64_t cgroup_id);
    // Names the cgroup of a tuple the programs reported new (while the cgroup exists).
    void name_cgroup(uint64_t cgroup_id);
    // A cgroup id's name, as the cgroup label shows it (its unit or path; "unknown" for 0 or a
    // cgroup not found). Looking up an id seen for the first time may walk the cgroup file
    // system (once per id).
    std::string cgroup_name(uint64_t cgroup_id);

    // Marks the ports neither listed nor listened on now (bit p % 64 of [p / 64]) gone, and,
    // when a cgroup value was refused for want of room, the cgroups removed since (walking the
    // cgroup file system, at most once per kCgroupRefresh).
    void mark_gone(const uint64_t (&listening_now)[65536 / 64]);
    // Whether a value refused since the last forget_refused() could now take a gone value's
    // place: the tuples given "other" for it would get it if assigned again.
    bool wants_room() const;
    void forget_refused() { refused_.fill(false); }

    std::string_view name(Label label, uint32_t index) const {
        return label == Label::Port ? ports_.name(index) : cgroups_.name(index);
    }
    const LabelValues& values_of(Label label) const {
        return label == Label::Port ? ports_ : cgroups_;
    }
    // Tuples whose value was refused for want of room, by label (tcpstatesd_label_value_
    // overflows_total).
    uint64_t refusals(Label label) const { return refusals_[static_cast<size_t>(label)]; }
    uint64_t replacements(Label label) const { return replacements_[static_cast<size_t>(label)]; }

private:
    uint32_t admit(Label label, const std::string& name, std::vector<Eviction>* evicted);
    // After a walk of the cgroup file system: the removed cgroups' values are gone.
    void mark_gone_cgroups();

    LabelsConfig config_;
    CgroupNames& cgroup_names_;
    LabelValues ports_;
    LabelValues cgroups_;
    // Names of the cgroup ids seen, kept while their tuples may be read (bounded: cleared when
    // it outgrows the ids the tables can hold).
    std::unordered_map<uint64_t, std::string> cgroup_ids_;
    uint64_t cgroup_walks_seen_ = 0;
    std::array<bool, std::size(kLabels)> refused_{};  // since forget_refused()
    std::array<uint64_t, std::size(kLabels)> refusals_{};
    std::array<uint64_t, std::size(kLabels)> replacements_{};
    uint64_t uses_ = 0;  // the clock of last use
};

}  // namespace tcpstatesd

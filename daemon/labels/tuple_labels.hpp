// The `port` and `cgroup` label values of the programs' label tuples (labels.* in the
// configuration, docs/metrics.md "Labels"). A tuple names a service port and an owner's cgroup
// id; this turns them into label values within each label's max_values: a port's number, a
// cgroup's unit or path, or "other" (and "unknown" for a cgroup nobody saw open the socket).
// A value nothing uses any more (a port nobody listens on, a removed cgroup) is marked gone; a
// new value refused while the set is full may take a gone value's place, but only where the
// caller can drop the gone value's series first (CountedMetrics, at a swap of the tables).
// Not thread-safe: the caller serializes.
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
    // yet is admitted if there is room; one refused is remembered, so that make_room() can
    // replace a gone value for it. Looking up a cgroup id seen for the first time may walk the
    // cgroup file system (once per id).
    Values values(uint16_t port, uint64_t cgroup_id);
    // Names the cgroup of a tuple the programs reported new (while the cgroup exists).
    void name_cgroup(uint64_t cgroup_id);

    // Marks the ports neither listed nor listened on now (bit p % 64 of [p / 64]) gone, and the
    // cgroups no longer there (walking the cgroup file system, at most once per `age`).
    void mark_gone(const uint64_t (&listening_now)[65536 / 64],
                   std::chrono::steady_clock::duration age);
    // Whether values were refused that a gone value could make room for.
    bool wants_room() const;
    // Admits the refused values in gone values' places (least recently used first) and returns
    // the values replaced. Forget every assignment made before: an index may name another
    // value now.
    std::vector<Eviction> make_room();

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
    uint32_t port_value(uint16_t port);
    uint32_t cgroup_value(uint64_t cgroup_id);
    std::string cgroup_name(uint64_t cgroup_id);

    LabelsConfig config_;
    CgroupNames& cgroup_names_;
    LabelValues ports_;
    LabelValues cgroups_;
    // Names of the cgroup ids seen, kept while their tuples may be read (bounded: cleared when
    // it outgrows the ids the tables can hold).
    std::unordered_map<uint64_t, std::string> cgroup_ids_;
    std::vector<std::string> refused_ports_, refused_cgroups_;  // since the last make_room()
    std::array<uint64_t, std::size(kLabels)> refusals_{};
    std::array<uint64_t, std::size(kLabels)> replacements_{};
    uint64_t uses_ = 0;  // the clock of last use
};

}  // namespace tcpstatesd

// The aggregator: turns each kernel record (a transition, a reset, a retransmission) into
// counter increments and histogram observations in a prometheus-cpp Registry, under the
// optional `port` and `cgroup` labels (daemon/labels/) within the labelled-series cap. Runs on the
// reactor thread; scrapes read the same metric objects from the HTTP threads through
// prometheus-cpp's own locks.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernel/event_source.hpp"
#include "labels/labels_config.hpp"
#include "labels/socket_labels.hpp"
#include "metrics/series_budget.hpp"

namespace tcpstatesd {

class TransitionMetrics : public TransitionSink {
public:
    // `labels` and `budget` must outlive the metrics; evictions of label values are routed
    // here.
    TransitionMetrics(prometheus::Registry& registry, std::vector<double> duration_buckets,
                      const LabelsConfig& config, SocketLabels& labels, SeriesBudget& budget);

    void on_transition(const tcpstates_transition& record) override;

    // Replaces the duration histograms' buckets: those histograms start over, every other
    // metric keeps counting. Call on the thread that delivers events.
    void set_duration_buckets(std::vector<double> buckets);
    // Applies a new labels configuration: a family whose set of labels changes starts its
    // series over; the others keep counting, and values already admitted stay.
    void set_labels(const LabelsConfig& config);
    uint64_t events_received() const { return static_cast<uint64_t>(events_received_.Value()); }

private:
    static constexpr unsigned kFamilies = 2;  // ipv4, ipv6
    static constexpr unsigned kStates = TCPSTATES_MAX_STATE + 1;

    // A series' identity: family, two fields of the metric family's own (the transition's
    // states; a close's state and reason; a reset's direction and state; a retransmission's
    // state in `to`), and the index of each label value it carries (0, "other", for a label
    // the metric family does not carry).
    struct Key {
        unsigned family, from, to;
        uint32_t port, cgroup;
        // One number per key, for the maps of series; unpacked() undoes it.
        uint64_t packed() const;
        static Key unpacked(uint64_t packed);
        uint32_t value(Label label) const { return label == Label::Port ? port : cgroup; }
        bool labelled() const {
            return port != LabelValues::kOther || cgroup != LabelValues::kOther;
        }
    };
    // A labelled counter family and its series.
    struct Counters {
        prometheus::Family<prometheus::Counter>& family;
        LabelledMetric metric;
        bool LabelledFamilies::*labelled;  // whose flag puts a label on it
        // Adds the labels of the key's own fields.
        void (*name)(const Key& key, prometheus::Labels& labels);
        std::unordered_map<uint64_t, prometheus::Counter*> series;
    };
    std::array<Counters*, 4> counter_families() {
        return {&transitions_, &closes_, &resets_, &retransmits_};
    }
    bool carries(Label label, bool LabelledFamilies::*family) const {
        return (label == Label::Port ? config_.port.families : config_.cgroup.families).*family;
    }
    Key key_for(bool port, bool cgroup, const Key& full) const;
    // Where a sample of `full` goes in a family that carries `port` and/or `cgroup`: its key,
    // and its series if it exists. A new labelled series takes `cost` samples from the budget,
    // or the sample goes to the family's "other" series instead.
    template <typename Metric>
    std::pair<Key, Metric*> place(std::unordered_map<uint64_t, Metric*>& series, bool port,
                                  bool cgroup, const Key& full, uint64_t cost,
                                  LabelledMetric metric);
    prometheus::Labels labels_of(const Key& key, bool port, bool cgroup) const;
    prometheus::Counter& counter(Counters& counters, const Key& full);
    prometheus::Histogram& duration(const Key& full);
    void count_transition(const tcpstates_transition& transition, const Key& key);
    uint64_t histogram_cost() const { return buckets_.size() + 3; }
    // Exports the transitions of ordinary connections at zero before they first happen
    // (for the unlabelled series only: labelled ones appear with their first transition).
    void export_common_series();
    // Removes the series whose key `remove` selects from a family and its map, giving their
    // cost back to the budget.
    template <typename Metric, typename Select>
    void remove_series(prometheus::Family<Metric>& family,
                       std::unordered_map<uint64_t, Metric*>& series, uint64_t cost, Select remove);
    void remove_value(Label label, uint32_t index);
    void remove_all(Counters& counters);
    void remove_all_durations();
    void update_label_gauges();
    void update_label_limits();

    SocketLabels& labels_;
    SeriesBudget& budget_;
    LabelsConfig config_;
    Counters transitions_;
    Counters closes_;
    Counters resets_;
    Counters retransmits_;
    prometheus::Family<prometheus::Counter>& unknown_start_;
    prometheus::Family<prometheus::Histogram>& durations_family_;
    prometheus::Counter& events_received_;
    // Each label's self metrics (tcpstatesd_label_*), indexed by Label.
    struct LabelAccounting {
        prometheus::Gauge* values;
        prometheus::Gauge* limit;
        prometheus::Counter* overflows;
        prometheus::Counter* replaced;
    };
    LabelAccounting& accounting(Label label) {
        return label_accounting_[static_cast<size_t>(label)];
    }
    std::array<LabelAccounting, std::size(kLabels)> label_accounting_{};
    std::vector<double> buckets_;
    std::unordered_map<uint64_t, prometheus::Histogram*> durations_;
    std::array<std::array<std::array<prometheus::Counter*, kStates>, kStates>, kFamilies>
        unknown_start_slots_{};
};

}  // namespace tcpstatesd

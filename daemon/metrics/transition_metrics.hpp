// The aggregator: turns each kernel event into counter increments and histogram
// observations in a prometheus-cpp Registry. Runs on the reactor thread; scrapes read the
// same metric objects from the HTTP threads through prometheus-cpp's own per-metric locks.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <vector>

#include "kernel/event_source.hpp"

namespace tcpstatesd {

class TransitionMetrics : public TransitionSink {
public:
    TransitionMetrics(prometheus::Registry& registry, std::vector<double> duration_buckets);

    void on_transition(const tcpstates_transition& transition) override;

    // Replaces the duration histograms' buckets: those histograms start over, every other
    // metric keeps counting. Call on the thread that delivers events.
    void set_duration_buckets(std::vector<double> buckets);
    uint64_t events_received() const { return static_cast<uint64_t>(events_received_.Value()); }

private:
    static constexpr unsigned kFamilies = 2;  // ipv4, ipv6
    static constexpr unsigned kStates = TCPSTATES_MAX_STATE + 1;

    // Metric objects of one (family, from, to), resolved on first use, then reused: the
    // per-event path does no label lookup and no allocation.
    struct Slot {
        prometheus::Counter* transitions = nullptr;
        prometheus::Counter* unknown_start = nullptr;
        prometheus::Histogram* duration = nullptr;
    };
    Slot& slot(unsigned family, unsigned from, unsigned to);
    // Exports the transitions of ordinary connections at zero before they first happen.
    void export_common_series();
    prometheus::Histogram& duration(unsigned family, unsigned from, unsigned to);

    prometheus::Family<prometheus::Counter>& transitions_;
    prometheus::Family<prometheus::Counter>& unknown_start_;
    prometheus::Family<prometheus::Histogram>& durations_;
    prometheus::Counter& events_received_;
    std::vector<double> buckets_;
    std::array<std::array<std::array<Slot, kStates>, kStates>, kFamilies> slots_{};
};

}  // namespace tcpstatesd

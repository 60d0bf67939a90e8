// The cap on the series that carry a `port` or `cgroup` value (labels.max_series), shared by
// every labelled metric family, with its self metrics. Counted in samples: a counter or gauge
// series is one, a histogram's is its buckets + 3 (+Inf, sum, count). Thread-safe: the
// counters and histograms reserve on the reactor thread, the gauge at scrape time.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace tcpstatesd {

// The labelled metric families.
enum class LabelledMetric {
    Transitions,
    StateDurations,
    Sockets,
    Closes,
    Resets,
    Retransmits,
    StateOldest,
    ListenQueueLength,
    ListenQueueLimit,
    ListenDrops,
    EphemeralPorts,
    HandshakeRtt,
};
constexpr LabelledMetric kLabelledMetrics[] = {
    LabelledMetric::Transitions,      LabelledMetric::StateDurations,
    LabelledMetric::Sockets,          LabelledMetric::Closes,
    LabelledMetric::Resets,           LabelledMetric::Retransmits,
    LabelledMetric::StateOldest,      LabelledMetric::ListenQueueLength,
    LabelledMetric::ListenQueueLimit, LabelledMetric::ListenDrops,
    LabelledMetric::EphemeralPorts,   LabelledMetric::HandshakeRtt};

// The metric family's name: "tcpstates_transitions_total", ...
constexpr std::string_view metric_name(LabelledMetric metric) {
    constexpr std::string_view names[] = {"tcpstates_transitions_total",
                                          "tcpstates_state_duration_seconds",
                                          "tcpstates_sockets",
                                          "tcpstates_closes_total",
                                          "tcpstates_resets_total",
                                          "tcpstates_retransmits_total",
                                          "tcpstates_state_oldest_seconds",
                                          "tcpstates_listen_queue_length",
                                          "tcpstates_listen_queue_limit",
                                          "tcpstates_listen_drops_total",
                                          "tcpstates_ephemeral_ports_used_ratio",
                                          "tcpstates_handshake_rtt_seconds"};
    return names[static_cast<size_t>(metric)];
}

class SeriesBudget {
public:
    SeriesBudget(prometheus::Registry& registry, uint32_t max_series);

    void set_limit(uint32_t max_series);
    // Takes `cost` samples for a new series that lives in the registry, or, if they would pass
    // the cap, counts one overflow of `metric` and returns false.
    bool reserve(uint64_t cost, LabelledMetric metric);
    void release(uint64_t cost);
    // Samples left for the gauge's labelled samples at this scrape.
    uint64_t available() const;
    // Counts `count` overflows of `metric` (folded into "other").
    void overflowed(LabelledMetric metric, uint64_t count = 1);

private:
    std::atomic<uint64_t> used_{0};
    std::atomic<uint64_t> limit_;
    prometheus::Family<prometheus::Counter>& overflows_;
    std::array<prometheus::Counter*, std::size(kLabelledMetrics)> overflow_counters_{};
    prometheus::Gauge& used_gauge_;
    prometheus::Gauge& limit_gauge_;
};

}  // namespace tcpstatesd

#include "metrics/event_loss_collector.hpp"

#include <string>

#include "metrics/metric_family.hpp"

namespace tcpstatesd {

std::vector<prometheus::MetricFamily> EventLossCollector::Collect() const {
    prometheus::MetricFamily lost =
        metric_family("tcpstatesd_events_lost_total",
                      "Transition events that never reached the aggregator, by reason.",
                      prometheus::MetricType::Counter);
    const EventLosses losses = source_.losses();
    for (size_t i = 0; i < kLossReasons; ++i) {
        const auto reason = static_cast<LossReason>(i);
        add_sample(lost, {{"reason", std::string(loss_reason_name(reason))}},
                   static_cast<double>(losses[reason]));
    }
    return {std::move(lost),
            single_sample(
                "tcpstatesd_nested_transitions_total",
                "Transitions that arrived while the first program ran on the same CPU (an "
                "interrupt): the kernel skipped the first program for them, the nested program "
                "handled them.",
                prometheus::MetricType::Counter,
                static_cast<double>(program_.read_counters()[TCPSTATES_COUNTER_NESTED_RUNS]))};
}

}  // namespace tcpstatesd

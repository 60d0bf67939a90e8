#include "metrics/event_loss_collector.hpp"

#include <string>

#include "metrics/metric_family.hpp"

namespace tcpstatesd {

Collection EventLossCollector::collect() const {
    prometheus::MetricFamily lost = metric_family(
        "tcpstatesd_events_lost_total",
        "Events lost, by reason: recursion, transitions, resets and retransmissions the programs "
        "did not count (the kernel skipped them); the others, records the buffer to the daemon "
        "did not carry (new tuples, whose cgroups are then named when read: no count is lost).",
        prometheus::MetricType::Counter);
    const EventLosses losses = source_.losses();
    for (size_t i = 0; i < kLossReasons; ++i) {
        const auto reason = static_cast<LossReason>(i);
        add_sample(lost, {{"reason", std::string(loss_reason_name(reason))}},
                   static_cast<double>(losses[reason]));
    }
    return {
        {std::move(lost),
         single_sample("tcpstatesd_events_received_total",
                       "Records the programs sent the daemon: label tuples counted under for "
                       "the first time.",
                       prometheus::MetricType::Counter, static_cast<double>(source_.received())),
         single_sample("tcpstatesd_socket_records_leaked_total",
                       "Sockets destroyed while neither program that forgets their record "
                       "could run (the kernel skipped both), at most: the record stays until "
                       "the address is reused.",
                       prometheus::MetricType::Counter,
                       static_cast<double>(program_.leaked_records())),
         single_sample(
             "tcpstatesd_nested_transitions_total",
             "Transitions that arrived while the first program ran on the same CPU (an "
             "interrupt): the kernel skipped the first program for them, the nested program "
             "handled them.",
             prometheus::MetricType::Counter,
             static_cast<double>(program_.read_counters()[TCPSTATES_COUNTER_NESTED_HANDLED]))},
        {}};
}

}  // namespace tcpstatesd

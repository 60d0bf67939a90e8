// tcpstatesd_events_lost_total{reason}: the event source's loss accounting, read at scrape
// time.
#pragma once

#include <prometheus/collectable.h>

#include "kernel/event_source.hpp"

namespace tcpstatesd {

class EventLossCollector : public prometheus::Collectable {
public:
    // The source must outlive the collector (and every scrape that uses it).
    explicit EventLossCollector(const EventSource& source) : source_(source) {}

    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    const EventSource& source_;
};

}  // namespace tcpstatesd

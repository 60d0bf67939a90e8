// tcpstatesd_events_lost_total{reason}: the event source's loss accounting, and the
// transitions the nested program saved from the recursion guard, read at scrape time.
#pragma once

#include "exposition/collection.hpp"

#include "kernel/bpf_program.hpp"
#include "kernel/event_source.hpp"

namespace tcpstatesd {

class EventLossCollector : public Collector {
public:
    // Both must outlive the collector (and every scrape that uses it).
    EventLossCollector(const EventSource& source, const BpfProgram& program)
        : source_(source), program_(program) {}

    Collection collect() const override;

private:
    const EventSource& source_;
    const BpfProgram& program_;
};

}  // namespace tcpstatesd

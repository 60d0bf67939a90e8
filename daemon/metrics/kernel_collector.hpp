// Metrics read from the kernel side at scrape time: sockets per state from the socket
// table, the table's fill and evictions, and every way an event can be lost. Reading at
// scrape time keeps them exact when scraped and costs the event path nothing.
#pragma once

#include <prometheus/collectable.h>

#include <array>
#include <cstdint>
#include <mutex>

#include "kernel/bpf_program.hpp"
#include "metrics/transition_metrics.hpp"

namespace tcpstatesd {

struct LossCount {
    const char* reason;  // label value of tcpstatesd_events_lost_total
    uint64_t count;
};
// Every way an event can be lost, kernel and user space together. `recursion_misses`:
// BpfProgram::recursion_misses().
std::array<LossCount, 5> losses_by_reason(const KernelCounters& kernel, uint64_t recursion_misses,
                                          const UserSpaceLosses& user);

class KernelCollector : public prometheus::Collectable {
public:
    // Both must outlive the collector (and every scrape that uses it).
    KernelCollector(const BpfProgram& program, const UserSpaceLosses& losses);

    std::vector<prometheus::MetricFamily> Collect() const override;

    // The filters the program applies now: sockets they exclude are not counted.
    void set_filters(const EventFilters& filters);

private:
    const BpfProgram& program_;
    const UserSpaceLosses& losses_;
    mutable std::mutex mutex_;
    EventFilters filters_;
    mutable uint64_t evictions_ = 0;  // kept monotonic across concurrent scrapes
};

}  // namespace tcpstatesd

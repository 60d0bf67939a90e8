// Metrics read from the kernel's socket table at scrape time: sockets per state, the table's
// fill, evictions, refused inserts and stale entries. Reading at scrape time keeps them exact
// when scraped and costs the event path nothing.
#pragma once

#include <prometheus/collectable.h>

#include <cstdint>
#include <mutex>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

class SocketTableCollector : public prometheus::Collectable {
public:
    // The program must outlive the collector (and every scrape that uses it).
    explicit SocketTableCollector(const BpfProgram& program);

    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    const BpfProgram& program_;
    mutable std::mutex mutex_;
    mutable uint64_t evictions_ = 0;  // kept monotonic across concurrent scrapes
};

}  // namespace tcpstatesd

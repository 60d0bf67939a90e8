// The gauge of sockets per state and the accounting of per-socket state. At each scrape a walk
// counts every socket of the daemon's network namespace as ss does; the kernel programs count
// the sockets of other namespaces as they change state. A first walk at start checks that
// walks work and measures them.
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <cstdint>

#include "kernel/bpf_program.hpp"
#include "labels/listening_ports.hpp"
#include "labels/socket_labels.hpp"
#include "metrics/series_budget.hpp"

namespace tcpstatesd {

class SocketStateCollector : public prometheus::Collectable {
public:
    // Runs the start-up walk (when the program can walk). Each walk also tells `listening`
    // which ports have a listener. With the `port` or `cgroup` label on the gauge, scrapes
    // label its sockets with `labels` within `budget`. All must outlive the collector (and
    // every scrape that uses it). Throws BpfError.
    SocketStateCollector(const BpfProgram& program, ListeningPorts& listening, SocketLabels& labels,
                         SeriesBudget& budget);

    // Sockets the start-up walk found, and how long it took.
    uint64_t startup_sockets() const { return startup_sockets_; }
    double startup_seconds() const { return startup_seconds_; }

    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    // The gauge with the port and/or cgroup labels (any = true) or without.
    prometheus::MetricFamily gauge(bool port, bool cgroup) const;

    const BpfProgram& program_;
    ListeningPorts& listening_;
    SocketLabels& labels_;
    SeriesBudget& budget_;
    uint64_t startup_sockets_ = 0;
    double startup_seconds_ = 0;
    mutable std::atomic<uint64_t> walk_failures_{0};
};

}  // namespace tcpstatesd

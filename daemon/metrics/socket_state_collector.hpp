// The gauge of sockets per state and the accounting of per-socket state. At each scrape a walk
// counts every socket of the daemon's network namespace as ss does; the kernel programs count
// the sockets of other namespaces as they change state. A first walk at start checks that
// walks work and measures them.
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <cstdint>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

class SocketStateCollector : public prometheus::Collectable {
public:
    // Runs the start-up walk (when the program can walk). The program must outlive the
    // collector (and every scrape that uses it). Throws BpfError.
    explicit SocketStateCollector(const BpfProgram& program);

    // Sockets the start-up walk found, and how long it took.
    uint64_t startup_sockets() const { return startup_sockets_; }
    double startup_seconds() const { return startup_seconds_; }

    std::vector<prometheus::MetricFamily> Collect() const override;

private:
    const BpfProgram& program_;
    uint64_t startup_sockets_ = 0;
    double startup_seconds_ = 0;
    mutable std::atomic<uint64_t> walk_failures_{0};
};

}  // namespace tcpstatesd

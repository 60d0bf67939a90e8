// The gauge of sockets per state and the accounting of per-socket state. Sockets with stored
// state are counted by the kernel programs as they change state; at each scrape a walk of the
// daemon's network namespace adds the timewait and request sockets (which make no transition
// the programs see) and stores any full socket not known yet. The first walk, at start, makes
// sockets older than the daemon known.
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <cstdint>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

class SocketStateCollector : public prometheus::Collectable {
public:
    // Runs the start-up walk (when the program can walk), so construct it once the programs
    // are attached: a socket changing state meanwhile is then seen by one or the other. The
    // program must outlive the collector (and every scrape that uses it). Throws BpfError.
    explicit SocketStateCollector(const BpfProgram& program);

    // Sockets the start-up walk found and stored, and how long it took.
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

#include "runtime/count_upkeep.hpp"

#include <spdlog/spdlog.h>

#include "kernel/bpf_program.hpp"
#include "kernel/socket_walk.hpp"
#include "metrics/counted_metrics.hpp"

namespace tcpstatesd {

CountUpkeep::CountUpkeep(BpfProgram& program, CountedMetrics& metrics, uint32_t walk_cpu_percent)
    : program_(program), metrics_(metrics), walk_cpu_percent_(walk_cpu_percent) {
    next_swap_check_ = Clock::now() + kMinSwapInterval;
    // Nothing is stale or destroyed yet: the start-up walk recorded the table's sockets.
    next_listing_ = Clock::now() + kRecordListingInterval;
    if (!program_.can_walk_sockets()) return;
    const SocketWalk first = walk();
    startup_sockets_ = first.totals.sockets;
    startup_seconds_ = first.seconds;
    next_walk_ = next_walk_after(first.cpu_seconds);
}

CountUpkeep::Clock::time_point CountUpkeep::next_walk_after(double walk_cpu_seconds) const {
    const std::chrono::duration<double> pause(walk_cpu_seconds * 100.0 / walk_cpu_percent_);
    return Clock::now() + std::max<Clock::duration>(
                              kMinWalkInterval, std::chrono::duration_cast<Clock::duration>(pause));
}

SocketWalk CountUpkeep::walk() {
    const bool listing_due = Clock::now() >= next_listing_;
    SocketWalk walk =
        walk_sockets(program_, listing_due ? SweepListing::read_record_table : SweepListing::skip);
    metrics_.walked(walk);
    if (walk.listing)
        next_listing_ =
            walk.listing->complete ? Clock::now() + kRecordListingInterval : Clock::now();
    if (walk.totals.corrected != 0) next_listing_ = Clock::now();
    return walk;
}

void CountUpkeep::FailureRun::failed(const std::exception& e) {
    if (failures_++ == 0) spdlog::warn("{}: {}; {}", doing_, e.what(), meanwhile_);
}

void CountUpkeep::FailureRun::succeeded() {
    if (failures_ != 0) spdlog::info("{}: works again, after {} failed tries", doing_, failures_);
    failures_ = 0;
}

void CountUpkeep::tick() {
    const auto now = Clock::now();
    if (program_.can_walk_sockets() && now >= next_walk_) {
        double seconds = 0;  // CPU time: on a loaded host the wall time is longer
        try {
            seconds = walk().cpu_seconds;
            walk_failures_.succeeded();
        } catch (const std::exception& e) {
            metrics_.walk_failed();
            walk_failures_.failed(e);
        }
        next_walk_ = next_walk_after(seconds);
    }
    if (now >= next_swap_check_) {
        next_swap_check_ = now + kMinSwapInterval;
        try {
            if (metrics_.swap_wanted()) metrics_.swap();
            // Also when a reload's swap made this one unnecessary: a later failure is logged.
            swap_failures_.succeeded();
        } catch (const std::exception& e) {
            metrics_.swap_failed();
            swap_failures_.failed(e);
        }
    }
}

}  // namespace tcpstatesd

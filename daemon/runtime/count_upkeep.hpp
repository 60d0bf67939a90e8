// The reactor thread's work on the counts besides the new tuples: walking the sockets in the
// background (the gauge's TIME_WAIT and request sockets, and corrections) and swapping the
// count tables when labels want room or a table fills. docs/architecture.md, "The background
// walk", says what each costs.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>

#include "kernel/socket_walk.hpp"

namespace tcpstatesd {

class BpfProgram;
class CountedMetrics;

class CountUpkeep {
public:
    // How often tick() must run.
    static constexpr std::chrono::seconds kTickInterval{1};
    // A walk runs at most this often, and takes no more than the configured share of one CPU
    // (metrics.socket_walk_cpu_percent): at 1%, the next waits a hundred times the CPU time the
    // last took.
    static constexpr std::chrono::seconds kMinWalkInterval{5};
    // How often a walk reads the record table to list what the next sweeps (socket_walk.hpp):
    // sooner, at the next walk, after a listing that could not list everything or a walk that
    // corrected records (the programs missed transitions, so they may have missed ends).
    static constexpr std::chrono::seconds kRecordListingInterval{30};
    // How often a swap may happen (each waits for the programs, milliseconds): a table filling
    // with new tuples is swapped within this, without waiting for a walk.
    static constexpr std::chrono::seconds kMinSwapInterval{2};

    // Both must outlive the upkeep. Runs the first walk (the start-up one) now when the program
    // can walk; throws BpfError if it fails.
    CountUpkeep(BpfProgram& program, CountedMetrics& metrics, uint32_t walk_cpu_percent);

    // A reload: the pause after the next walk is the first to follow it.
    void set_walk_cpu_percent(uint32_t percent) { walk_cpu_percent_ = percent; }

    // On the reactor thread, every kTickInterval. Logs what fails and goes on.
    void tick();

    uint64_t startup_sockets() const { return startup_sockets_; }
    double startup_seconds() const { return startup_seconds_; }

private:
    using Clock = std::chrono::steady_clock;
    // When the walk after one that took this much CPU time may start.
    Clock::time_point next_walk_after(double walk_cpu_seconds) const;
    // Walks now, listing if due; takes the walk into the metrics. Throws what the walk throws.
    SocketWalk walk();

    BpfProgram& program_;
    CountedMetrics& metrics_;
    uint32_t walk_cpu_percent_;
    Clock::time_point next_walk_{};
    Clock::time_point next_swap_check_{};
    Clock::time_point next_listing_{};
    uint64_t startup_sockets_ = 0;
    double startup_seconds_ = 0;

    // Logs the first of a run of failures and the success that ends it, not each try: a lasting
    // cause (a memory shortage) would log every few seconds. The metrics count each failure.
    class FailureRun {
    public:
        FailureRun(const char* doing, const char* meanwhile)
            : doing_(doing), meanwhile_(meanwhile) {}
        void failed(const std::exception& e);
        void succeeded();

    private:
        const char* doing_;
        const char* meanwhile_;
        uint64_t failures_ = 0;
    };
    FailureRun walk_failures_{"the background walk of the sockets",
                              "the gauge keeps the last walk's TIME_WAIT and request sockets, and "
                              "the next walk will try again"};
    FailureRun swap_failures_{"swapping the count tables",
                              "the tables in use keep counting, and the next check will try again"};
};

}  // namespace tcpstatesd

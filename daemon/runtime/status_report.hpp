// What the daemon says about its own health: the heartbeat behind /-/healthy (the reactor
// thread is alive) and, every ten seconds, the line `systemctl status` shows.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "kernel/event_source.hpp"
#include "metrics/counted_metrics.hpp"
#include "runtime/systemd_notify.hpp"

namespace tcpstatesd {

class StatusReport {
public:
    // How often tick() must run.
    static constexpr std::chrono::seconds kTickInterval{1};

    // Everything given must outlive the report.
    StatusReport(const SystemdNotifier& systemd, const CountedMetrics& metrics,
                 const EventSource& source);

    // On the reactor thread, every kTickInterval.
    void tick();
    // True while tick() ran recently: the reactor thread is not stuck. Thread-safe.
    bool healthy() const;

private:
    using Clock = std::chrono::steady_clock;

    const SystemdNotifier& systemd_;
    const CountedMetrics& metrics_;
    const EventSource& source_;
    std::atomic<Clock::rep> heartbeat_;
    Clock::time_point last_status_;
    uint64_t last_counted_ = 0;
};

}  // namespace tcpstatesd

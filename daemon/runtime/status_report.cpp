#include "runtime/status_report.hpp"

#include <fmt/format.h>

namespace tcpstatesd {

namespace {

// /-/healthy fails when the reactor thread has not ticked for this long.
constexpr std::chrono::seconds kHeartbeatTimeout{10};
constexpr std::chrono::seconds kStatusInterval{10};

}  // namespace

StatusReport::StatusReport(const SystemdNotifier& systemd, const CountedMetrics& metrics,
                           const EventSource& source)
    : systemd_(systemd),
      metrics_(metrics),
      source_(source),
      heartbeat_(Clock::now().time_since_epoch().count()),
      last_status_(Clock::now()) {}

void StatusReport::tick() {
    const auto now = Clock::now();
    heartbeat_ = now.time_since_epoch().count();
    if (now - last_status_ < kStatusInterval) return;
    uint64_t counted = 0;
    try {
        counted = metrics_.transitions_total();
    } catch (const std::exception&) {
        return;  // a scrape reports the error; the status line waits for the next time
    }
    const double seconds = std::chrono::duration<double>(now - last_status_).count();
    systemd_.status(fmt::format("{:.0f} transitions/s, {} events lost",
                                static_cast<double>(counted - last_counted_) / seconds,
                                source_.losses().total()));
    last_counted_ = counted;
    last_status_ = now;
}

bool StatusReport::healthy() const {
    const auto last = Clock::time_point(Clock::duration(heartbeat_.load()));
    return Clock::now() - last < kHeartbeatTimeout;
}

}  // namespace tcpstatesd

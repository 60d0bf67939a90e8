// Every way a transition can fail to reach the daemon, counted by reason: what
// tcpstatesd_events_lost_total exports, the status line sums and `trace` reports.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

namespace tcpstatesd {

enum class LossReason : size_t {
    Recursion,        // the kernel skipped the program: it was already running on that CPU
    RingBufferFull,   // bpf_ringbuf_reserve failed
    PerfBufferFull,   // the perf buffer's lost-sample records
    PerfBufferError,  // perf output failed for another reason
    Malformed,        // a record too short, or of an unknown address family
};

// Each reason's label value of tcpstatesd_events_lost_total{reason}, indexed by the reason.
inline constexpr std::string_view kLossReasonNames[] = {"recursion", "ringbuf_full", "perfbuf_full",
                                                        "perfbuf_error", "malformed"};
inline constexpr size_t kLossReasons = std::size(kLossReasonNames);
static_assert(static_cast<size_t>(LossReason::Malformed) + 1 == kLossReasons);

inline std::string_view loss_reason_name(LossReason reason) {
    return kLossReasonNames[static_cast<size_t>(reason)];
}

struct EventLosses {
    std::array<uint64_t, kLossReasons> counts{};

    uint64_t operator[](LossReason reason) const { return counts[static_cast<size_t>(reason)]; }
    uint64_t total() const;
};

}  // namespace tcpstatesd

#include "kernel/event_losses.hpp"

#include <numeric>

namespace tcpstatesd {

std::string_view loss_reason_name(LossReason reason) {
    switch (reason) {
        case LossReason::Recursion:
            return "recursion";
        case LossReason::RingBufferFull:
            return "ringbuf_full";
        case LossReason::PerfBufferFull:
            return "perfbuf_full";
        case LossReason::PerfBufferError:
            return "perfbuf_error";
        case LossReason::Malformed:
            return "malformed";
    }
    return "?";
}

uint64_t EventLosses::total() const {
    return std::accumulate(counts.begin(), counts.end(), uint64_t{0});
}

}  // namespace tcpstatesd

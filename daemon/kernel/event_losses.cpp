#include "kernel/event_losses.hpp"

#include <numeric>

namespace tcpstatesd {

uint64_t EventLosses::total() const {
    return std::accumulate(counts.begin(), counts.end(), uint64_t{0});
}

}  // namespace tcpstatesd

// The local ports the host listens on: found by each walk of the sockets (a scrape's thread)
// and by transitions to LISTEN (the reactor's), read per event. Lock-free: one atomic word
// per 64 ports.
//
// A port is a service port from the first time the daemon sees a listener on it until it
// exits (seen()), so that every transition of a connection carries the same port value, also
// those the reactor handles after the listener closed. Whether a listener is there now
// (listened_on_now(), the last walk's answer) decides only which values may be replaced.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace tcpstatesd {

class ListeningPorts {
public:
    static constexpr size_t kWords = 65536 / 64;

    bool seen(uint16_t port) const { return bit(seen_, port); }
    bool listened_on_now(uint16_t port) const { return bit(now_, port); }
    void add(uint16_t port) {
        seen_[port / 64].fetch_or(uint64_t{1} << (port % 64), std::memory_order_relaxed);
    }
    // What a walk found (bit p % 64 of words[p / 64]).
    void walked(const uint64_t (&words)[kWords]) {
        for (size_t i = 0; i < kWords; ++i) {
            now_[i].store(words[i], std::memory_order_relaxed);
            seen_[i].fetch_or(words[i], std::memory_order_relaxed);
        }
        walks_.fetch_add(1, std::memory_order_release);
    }
    // Walks so far: the set of ports listened on now may have changed since the last look.
    uint64_t walks() const { return walks_.load(std::memory_order_acquire); }

private:
    using Words = std::array<std::atomic<uint64_t>, kWords>;
    static bool bit(const Words& words, uint16_t port) {
        return (words[port / 64].load(std::memory_order_relaxed) >> (port % 64)) & 1;
    }

    Words seen_{};
    Words now_{};
    std::atomic<uint64_t> walks_{0};
};

}  // namespace tcpstatesd

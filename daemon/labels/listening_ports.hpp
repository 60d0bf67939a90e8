// The local ports that have a listener: set from each walk of the sockets (a scrape's thread)
// and from transitions to LISTEN (the reactor's), read per event. Lock-free: one atomic word
// per 64 ports.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace tcpstatesd {

class ListeningPorts {
public:
    static constexpr size_t kWords = 65536 / 64;

    bool contains(uint16_t port) const {
        return (words_[port / 64].load(std::memory_order_relaxed) >> (port % 64)) & 1;
    }
    void add(uint16_t port) {
        words_[port / 64].fetch_or(uint64_t{1} << (port % 64), std::memory_order_relaxed);
    }
    // Replaces the set with a walk's (bit p % 64 of words[p / 64]).
    void replace(const uint64_t (&words)[kWords]) {
        for (size_t i = 0; i < kWords; ++i) words_[i].store(words[i], std::memory_order_relaxed);
        walks_.fetch_add(1, std::memory_order_release);
    }
    // Walks so far: the set of ports gone may have changed since the last look.
    uint64_t walks() const { return walks_.load(std::memory_order_acquire); }

private:
    std::array<std::atomic<uint64_t>, kWords> words_{};
    std::atomic<uint64_t> walks_{0};
};

}  // namespace tcpstatesd

// Consumes the kernel's records from the ring buffer or the perf buffer: `trace`'s events, or
// the daemon's new label tuples. It exposes one fd
// (an epoll fd owned by libbpf) that becomes readable when records are waiting, so any event
// loop can poll it; consume() then drains without blocking. It owns the accounting of
// everything lost on the way (losses()).
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>

#include "kernel/event_losses.hpp"
#include "tcpstates.h"

struct ring_buffer;
struct perf_buffer;

namespace tcpstatesd {

class BpfProgram;

// Receives what a program loaded without event details (the daemon's) sends: the label
// tuples it counts under for the first time.
class TupleSink {
public:
    virtual ~TupleSink() = default;
    virtual void on_new_tuple(const tcpstates_tuple_key& key) = 0;
};

// Receives the full events of a program loaded with event details (`trace`, the tests).
class EventSink {
public:
    virtual ~EventSink() = default;
    virtual void on_event(const tcpstates_event& event) = 0;
};

class EventSource {
public:
    // How often a reader of a batching ring buffer (BpfOptions::ring_buffer_wakeup_bytes)
    // must drain it even without a wake-up: the latency of a quiet host's events.
    static constexpr std::chrono::milliseconds kDrainInterval{100};
    // Records received so far. Thread-safe.
    uint64_t received() const { return received_.load(std::memory_order_relaxed); }

    // The sink's kind must match the program's BpfOptions::event_details (else BpfError).
    // The program must outlive the source.
    EventSource(const BpfProgram& program, TupleSink& sink);
    EventSource(const BpfProgram& program, EventSink& sink);
    ~EventSource();
    EventSource(const EventSource&) = delete;
    EventSource& operator=(const EventSource&) = delete;

    int fd() const;
    // Delivers every record waiting now to the sink, without blocking. An exception the sink
    // throws is rethrown here (the record it refused is not delivered again).
    void consume();
    // Everything lost so far, kernel side and here. Thread-safe.
    EventLosses losses() const;

private:
    EventSource(const BpfProgram& program, TupleSink* tuples, EventSink* events);
    // Checks one record (size, family) and hands it to the sink.
    void deliver(const void* data, size_t size);

    static int on_ring_record(void* ctx, void* data, size_t size);
    static void on_perf_record(void* ctx, int cpu, void* data, uint32_t size);
    static void on_perf_lost(void* ctx, int cpu, unsigned long long count);

    struct FreeRingBuffer {
        void operator()(ring_buffer* reader) const;
    };
    struct FreePerfBuffer {
        void operator()(perf_buffer* reader) const;
    };

    const BpfProgram& program_;
    TupleSink* const tuples_;
    EventSink* const events_;
    std::unique_ptr<ring_buffer, FreeRingBuffer> ring_;
    std::unique_ptr<perf_buffer, FreePerfBuffer> perf_;
    std::atomic<uint64_t> perf_buffer_lost_{0};
    std::atomic<uint64_t> malformed_{0};
    std::atomic<uint64_t> received_{0};
    std::exception_ptr failure_;  // thrown by the sink inside a libbpf callback
};

}  // namespace tcpstatesd

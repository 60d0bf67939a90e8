// Consumes the kernel's events from the ring buffer or the perf buffer. It exposes one fd
// (an epoll fd owned by libbpf) that becomes readable when events are waiting, so any event
// loop can poll it; consume() then drains without blocking.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "tcpstates.h"

struct ring_buffer;
struct perf_buffer;

namespace tcpstatesd {

class BpfProgram;

class EventSink {
public:
    virtual ~EventSink() = default;
    // When the program sends compact transitions (BpfOptions::event_details false), only
    // the fields of struct tcpstates_transition are set; the others are zero.
    virtual void on_event(const tcpstates_event& event) = 0;
    // Events the transport could not deliver: the perf buffer was full (count from the
    // kernel's lost-sample record), or a record too short to be an event (a bug).
    virtual void on_lost(uint64_t count) = 0;
    virtual void on_malformed(size_t size) = 0;
};

class EventSource {
public:
    // How often a reader of a batching ring buffer (BpfOptions::ring_buffer_wakeup_bytes)
    // must drain it even without a wake-up: the latency of a quiet host's events.
    static constexpr std::chrono::milliseconds kDrainInterval{100};

    EventSource(const BpfProgram& program, EventSink& sink);
    ~EventSource();
    EventSource(const EventSource&) = delete;
    EventSource& operator=(const EventSource&) = delete;

    int fd() const;
    // Delivers every event waiting now, without blocking. Returns how many.
    size_t consume();

private:
    // Checks one record's size and hands it to the sink as a tcpstates_event.
    void deliver(const void* data, size_t size);

    EventSink& sink_;
    const bool details_;
    ring_buffer* ring_ = nullptr;
    perf_buffer* perf_ = nullptr;
    size_t delivered_ = 0;

    static int on_ring_record(void* ctx, void* data, size_t size);
    static void on_perf_record(void* ctx, int cpu, void* data, uint32_t size);
    static void on_perf_lost(void* ctx, int cpu, unsigned long long count);
};

}  // namespace tcpstatesd

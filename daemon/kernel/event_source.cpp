#include "kernel/event_source.hpp"

#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

namespace {

// Copies the record out whole (perf records are not aligned for the structs) when it is one:
// long enough, of a family (and a kind) the programs report.
bool read_record(const void* data, size_t size, tcpstates_event& event) {
    if (size < sizeof event) return false;
    std::memcpy(&event, data, sizeof event);
    const tcpstates_transition& transition = event.transition;
    return (transition.family == AF_INET || transition.family == AF_INET6) &&
           transition.kind < TCPSTATES_KINDS;
}

bool read_record(const void* data, size_t size, tcpstates_new_tuple& tuple) {
    if (size < sizeof tuple) return false;
    std::memcpy(&tuple, data, sizeof tuple);
    return tuple.key.ipv6 <= 1;
}

}  // namespace

EventSource::EventSource(const BpfProgram& program, TupleSink& sink)
    : EventSource(program, &sink, nullptr) {}

EventSource::EventSource(const BpfProgram& program, EventSink& sink)
    : EventSource(program, nullptr, &sink) {}

EventSource::EventSource(const BpfProgram& program, TupleSink* tuples, EventSink* events)
    : program_(program), tuples_(tuples), events_(events) {
    if (program.event_details() != (events != nullptr))
        throw BpfError(program.event_details()
                           ? "the program sends full events: read them with an EventSink"
                           : "the program sends new tuples: read them with a TupleSink");
    if (program.transport() == Transport::RingBuffer) {
        ring_.reset(ring_buffer__new(program.events_map_fd(), on_ring_record, this, nullptr));
        if (!ring_)
            throw BpfError(std::string("setting up the ring buffer reader: ") +
                           std::strerror(errno));
    } else {
        perf_.reset(perf_buffer__new(program.events_map_fd(), program.perf_buffer_pages(),
                                     on_perf_record, on_perf_lost, this, nullptr));
        if (!perf_)
            throw BpfError(std::string("setting up the perf buffer reader: ") +
                           std::strerror(errno) +
                           " (if ENOMEM: lower perf_buffer_pages or raise RLIMIT_MEMLOCK)");
    }
}

EventSource::~EventSource() = default;

void EventSource::FreeRingBuffer::operator()(ring_buffer* reader) const {
    ring_buffer__free(reader);
}

void EventSource::FreePerfBuffer::operator()(perf_buffer* reader) const {
    perf_buffer__free(reader);
}

int EventSource::fd() const {
    return ring_ ? ring_buffer__epoll_fd(ring_.get()) : perf_buffer__epoll_fd(perf_.get());
}

void EventSource::consume() {
    const int err = ring_ ? ring_buffer__consume(ring_.get()) : perf_buffer__consume(perf_.get());
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    if (err < 0 && err != -EINTR)
        throw BpfError(std::string("reading events: ") + std::strerror(-err));
}

EventLosses EventSource::losses() const {
    const KernelCounters kernel = program_.read_counters();
    EventLosses losses;
    auto set = [&](LossReason reason, uint64_t count) {
        losses.counts[static_cast<size_t>(reason)] = count;
    };
    set(LossReason::Recursion, program_.recursion_losses());
    set(LossReason::RingBufferFull, kernel[TCPSTATES_COUNTER_RINGBUF_FULL]);
    set(LossReason::PerfBufferFull, perf_buffer_lost_.load(std::memory_order_relaxed));
    set(LossReason::PerfBufferError, kernel[TCPSTATES_COUNTER_PERFBUF_ERROR]);
    set(LossReason::Malformed, malformed_.load(std::memory_order_relaxed));
    return losses;
}

void EventSource::deliver(const void* data, size_t size) {
    try {
        received_.fetch_add(1, std::memory_order_relaxed);
        if (events_) {
            tcpstates_event event;
            if (read_record(data, size, event)) return events_->on_event(event);
        } else {
            tcpstates_new_tuple tuple;
            if (read_record(data, size, tuple)) return tuples_->on_new_tuple(tuple.key);
        }
        malformed_.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
        // No exception may unwind through libbpf's C frames: consume() rethrows the first once
        // libbpf has returned. The ring buffer stops there (its callback fails); the perf
        // buffer cannot be stopped, so its later records are still delivered, not dropped.
        if (!failure_) failure_ = std::current_exception();
    }
}

int EventSource::on_ring_record(void* ctx, void* data, size_t size) {
    auto* self = static_cast<EventSource*>(ctx);
    self->deliver(data, size);
    return self->failure_ ? -1 : 0;  // negative: libbpf stops consuming
}

void EventSource::on_perf_record(void* ctx, int, void* data, uint32_t size) {
    static_cast<EventSource*>(ctx)->deliver(data, size);
}

void EventSource::on_perf_lost(void* ctx, int, unsigned long long count) {
    static_cast<EventSource*>(ctx)->perf_buffer_lost_.fetch_add(count, std::memory_order_relaxed);
}

}  // namespace tcpstatesd

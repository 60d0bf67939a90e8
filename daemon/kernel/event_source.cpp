#include "kernel/event_source.hpp"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

EventSource::EventSource(const BpfProgram& program, EventSink& sink)
    : sink_(sink), details_(program.event_details()) {
    if (program.transport() == Transport::RingBuffer) {
        ring_ = ring_buffer__new(program.events_map_fd(), on_ring_record, this, nullptr);
        if (!ring_)
            throw BpfError(std::string("setting up the ring buffer reader: ") +
                           std::strerror(errno));
    } else {
        perf_ = perf_buffer__new(program.events_map_fd(), program.perf_buffer_pages(),
                                 on_perf_record, on_perf_lost, this, nullptr);
        if (!perf_)
            throw BpfError(std::string("setting up the perf buffer reader: ") +
                           std::strerror(errno) +
                           " (if ENOMEM: lower perf_buffer_pages or raise RLIMIT_MEMLOCK)");
    }
}

EventSource::~EventSource() {
    ring_buffer__free(ring_);
    perf_buffer__free(perf_);
}

int EventSource::fd() const {
    return ring_ ? ring_buffer__epoll_fd(ring_) : perf_buffer__epoll_fd(perf_);
}

size_t EventSource::consume() {
    delivered_ = 0;
    int err = ring_ ? ring_buffer__consume(ring_) : perf_buffer__consume(perf_);
    if (err < 0 && err != -EINTR)
        throw BpfError(std::string("reading events: ") + std::strerror(-err));
    return delivered_;
}

void EventSource::deliver(const void* data, size_t size) {
    // Records are copied out: perf records are not aligned for the struct, and a compact
    // transition is widened into the one event type the sinks know.
    tcpstates_event event{};
    if (details_) {
        if (size < sizeof event) {
            sink_.on_malformed(size);
            return;
        }
        std::memcpy(&event, data, sizeof event);
    } else {
        tcpstates_transition t;
        if (size < sizeof t) {
            sink_.on_malformed(size);
            return;
        }
        std::memcpy(&t, data, sizeof t);
        event.duration_ns = t.duration_ns;
        event.family = t.family;
        event.lport = t.lport;
        event.rport = t.rport;
        event.old_state = t.old_state;
        event.new_state = t.new_state;
        event.flags = t.flags;
    }
    sink_.on_event(event);
    ++delivered_;
}

int EventSource::on_ring_record(void* ctx, void* data, size_t size) {
    static_cast<EventSource*>(ctx)->deliver(data, size);
    return 0;
}

void EventSource::on_perf_record(void* ctx, int, void* data, uint32_t size) {
    static_cast<EventSource*>(ctx)->deliver(data, size);
}

void EventSource::on_perf_lost(void* ctx, int, unsigned long long count) {
    static_cast<EventSource*>(ctx)->sink_.on_lost(count);
}

}  // namespace tcpstatesd

// Receiving the real program's events in a test: a sink that keeps everything, a bounded
// wait that consumes until a condition holds, and queries that pick one socket's events
// out of all the system's traffic.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernel/bpf_program.hpp"
#include "kernel/event_source.hpp"

namespace tcpstatesd::test {

// Long enough for a loaded 2-core box; a passing wait returns as soon as its condition holds.
constexpr std::chrono::milliseconds kEventTimeout{10000};

class EventCollector : public tcpstatesd::EventSink {
public:
    void on_event(const tcpstates_event& event) override { events.push_back(event); }

    std::vector<tcpstates_event> events;
};

// Polls source.fd() and consumes until done() holds or the timeout passes; returns done().
bool wait_until(tcpstatesd::EventSource& source, const std::function<bool()>& done,
                std::chrono::milliseconds timeout = kEventTimeout);

// A loaded, attached program with its reader and a collector: what most tests need.
struct Tracer {
    explicit Tracer(const tcpstatesd::BpfOptions& options);

    // The free wait_until() on this tracer's source; when the time runs out, the losses the
    // program counted are added to the test's failure message.
    bool wait_until(const std::function<bool()>& done,
                    std::chrono::milliseconds timeout = kEventTimeout);
    // "recursion: 0, ringbuf_full: 0, ..."
    std::string losses() const;
    // Consumes until a pass delivers nothing.
    void drain();
    uint64_t lost(tcpstatesd::LossReason reason) const { return source.losses()[reason]; }
    const std::vector<tcpstates_event>& events() const { return collector.events; }

    tcpstatesd::BpfProgram program;
    EventCollector collector;
    tcpstatesd::EventSource source;
};

// The transitions of the sockets of one connection made by run_connection() (the client
// closes first), as transitions() names them.
extern const std::vector<std::string> kClientLife;
extern const std::vector<std::string> kServerLife;  // the accepted socket
extern const std::vector<std::string> kListenerLife;

using EventMatch = std::function<bool(const tcpstates_event&)>;

// The events in the order they happened (by ts_ns; stable for equal stamps). A perf buffer
// is one buffer per CPU, read one CPU after the other: when a socket's transitions happen on
// different CPUs, they are received out of order.
std::vector<tcpstates_event> chronological(std::vector<tcpstates_event> events);

// One socket's life: its events, in the order they happened, from the first transition after
// the previous CLOSE of the same skaddr (the kernel reuses addresses quickly) through its own
// CLOSE, or to the last one received. The socket is named by any one of its events that
// `identifies` matches (the earliest such event). Empty when nothing matches.
std::vector<tcpstates_event> life_of(const std::vector<tcpstates_event>& events,
                                     const EventMatch& identifies);

// True when the life has ended: its last event is a transition to CLOSE.
bool ended(const std::vector<tcpstates_event>& life);
// The first event that `match` matches, or nullptr.
const tcpstates_event* first_of(const std::vector<tcpstates_event>& events,
                                const EventMatch& match);
// The transitions among the events, without the resets and retransmissions.
std::vector<tcpstates_event> state_changes(const std::vector<tcpstates_event>& events);

// "CLOSE->SYN_SENT", "RST received in SYN_SENT", ... : readable in a failed assertion.
std::vector<std::string> transitions(const std::vector<tcpstates_event>& events);

// Everything about an event except its timing (ts_ns, duration_ns), as one readable line:
// what two transports or two programs must agree on.
std::string describe(const tcpstates_event& event);

std::string comm_of(const tcpstates_event& event);

// The calling thread's comm, as bpf_get_current_comm() reports it.
std::string current_comm();
// This process's cgroup v2 id, as bpf_get_current_cgroup_id() reports it: the inode number
// of its cgroup's directory; nullopt where no cgroup2 file system is mounted (the kernel
// matrix's guests).
std::optional<uint64_t> current_cgroup_id();

// CLOCK_MONOTONIC in nanoseconds, the clock of bpf_ktime_get_ns() and, in libstdc++ on
// Linux, of std::chrono::steady_clock.
uint64_t steady_ns(std::chrono::steady_clock::time_point t);
uint64_t nanoseconds(std::chrono::steady_clock::duration d);

}  // namespace tcpstatesd::test

// The kernel half, loaded and attached: one RAII object owning the BPF object, its maps
// and its link. Construction either yields an attached program or throws BpfError with one
// line that names the cause and the fix.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel/transport.hpp"
#include "tcpstates.h"

struct tcpstates_bpf;
struct bpf_program;

namespace tcpstatesd {

// The defaults of the kernel objects' sizes (the configuration's events.* keys).
constexpr uint32_t kDefaultSocketTableSize = 65536;
constexpr uint32_t kDefaultRingBufferBytes = 4u << 20;
constexpr uint32_t kDefaultPerfBufferPages = 64;

// The wake-up threshold of a batching reader (the daemon and `trace`): an eighth of the ring
// (512 KiB of the default 4 MiB; docs/performance.md, "Wake-up threshold", measured 256 KiB
// and 1 MiB alike).
constexpr uint32_t batched_wakeup_bytes(uint32_t ring_buffer_bytes) {
    return ring_buffer_bytes / 8;
}

// What user space asks the kernel side to report. Empty port lists mean "every port".
struct EventFilters {
    int family = 0;  // 0 (both), AF_INET or AF_INET6
    std::vector<uint16_t> local_ports;
    std::vector<uint16_t> remote_ports;

    bool operator==(const EventFilters&) const = default;
};

struct BpfOptions {
    Transport transport = Transport::Auto;
    uint32_t socket_table_size = kDefaultSocketTableSize;
    uint32_t ring_buffer_bytes = kDefaultRingBufferBytes;  // power of two, >= the page size
    uint32_t perf_buffer_pages = kDefaultPerfBufferPages;  // per CPU, power of two
    // Full events (addresses, pid, comm, socket address, timestamp: what `trace` prints) or
    // compact transitions (what the metrics need; with the ring buffer's 8-byte header, 40
    // bytes against 120: a third of the space each).
    bool event_details = true;
    // Ring buffer only: wake the reader when this many bytes wait, not after every event
    // (0). The reader must then also drain on a timer (EventSource::kDrainInterval).
    uint32_t ring_buffer_wakeup_bytes = 0;
    EventFilters filters;
    // Also attach the programs on the reset tracepoints (tcp:tcp_send_reset,
    // tcp:tcp_receive_reset) and the retransmission ones (tcp:tcp_retransmit_skb,
    // tcp:tcp_retransmit_synack): their records come through the same buffer (kind
    // TCPSTATES_KIND_RESET_* / RETRANSMIT). They need the kernel's own BTF: ignored with
    // btf_path.
    bool resets = true;
    bool retransmits = true;
    // Empty: relocate against the kernel's own BTF and attach as a BTF raw tracepoint
    // (tp_btf), socket state in socket storage. Else a BTF file for a kernel without
    // /sys/kernel/btf/vmlinux: the program attaches as a plain raw tracepoint, which needs no
    // kernel BTF, keeps socket state in a table of socket_table_size sockets, and cannot walk
    // the existing sockets.
    std::string btf_path;
};

// Sockets per family and state: [0] IPv4, [1] IPv6, indexed by enum tcpstates_tcp_state.
using SocketCounts = std::array<std::array<int64_t, TCPSTATES_STATE_SLOTS>, 2>;
int64_t total_sockets(const SocketCounts& counts);

// What a walk of the network namespace's sockets found.
struct SocketWalk {
    SocketCounts sockets{};
    // The local ports with a listener: bit p % 64 of listening_ports[p / 64].
    uint64_t listening_ports[65536 / 64] = {};
    // A detailed walk's sockets, one by one (this network namespace's only).
    std::vector<tcpstates_walked_socket> detailed;
};

// Totals of the kernel's per-CPU counters (enum tcpstates_counter), summed over CPUs and
// writers.
struct KernelCounters {
    uint64_t values[TCPSTATES_COUNTER_MAX] = {};
    uint64_t operator[](tcpstates_counter c) const { return values[c]; }
};

class BpfError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class BpfProgram {
public:
    explicit BpfProgram(const BpfOptions& options);
    BpfProgram(const BpfProgram&) = delete;
    BpfProgram& operator=(const BpfProgram&) = delete;

    // The transport actually in use (Auto resolved against the running kernel).
    Transport transport() const { return transport_; }
    // The map the event source reads: the ring buffer or the perf event array.
    int events_map_fd() const;
    uint32_t perf_buffer_pages() const { return perf_buffer_pages_; }
    bool event_details() const { return event_details_; }
    // 0 when socket state lives in socket storage (no capacity), else the table's size.
    uint32_t socket_table_capacity() const { return socket_table_capacity_; }

    // Replaces the filters in place while the program stays attached. No event is dropped
    // that both the old and the new filters would report (new ports are added before old
    // ones are removed; a switch is off while its list is empty). The program is the one
    // owner of the filters: whoever needs them asks filters().
    void apply_filters(const EventFilters& requested);
    // The filters in force, port lists sorted. Thread-safe (scrapes read them).
    EventFilters filters() const;

    KernelCounters read_counters() const;
    // Transitions the kernel ran neither program for: the first one was already running on
    // that CPU (an interrupt's transition arrived meanwhile) and so was the nested one. The
    // first program's bpf_prog_info.recursion_misses (Linux >= 5.12; 0 before) minus the
    // nested program's runs in `counters`, which must have been read before this call: each
    // nested run follows the miss it makes up for, so misses read afterwards are never fewer.
    // Plus the misses of the reset and retransmission programs: resets and retransmissions
    // lost.
    uint64_t recursion_losses(const KernelCounters& counters) const;
    // Sockets now in each state, as the tracepoint programs count them: those with stored
    // state (seen changing state since the start) of the network namespaces the walk does not
    // see; with the raw tracepoint (no walk), of every namespace.
    SocketCounts socket_counts() const;
    // Whether walk_sockets() can run: not with the raw tracepoint (no kernel BTF).
    bool can_walk_sockets() const;
    // Counts every TCP socket of the network namespace the program was loaded in, per family
    // and state as `ss -tan` reports them (timewait and request sockets included), and finds
    // the ports listened on; with `details`, lists the sockets one by one as well. Throws
    // BpfError.
    SocketWalk walk_sockets(bool details = false) const;

private:
    void replace_ports(int map_fd, const std::vector<uint16_t>& old_ports,
                       const std::vector<uint16_t>& new_ports, const char* which);

    struct DestroySkeleton {
        void operator()(tcpstates_bpf* skeleton) const;
    };
    std::unique_ptr<tcpstates_bpf, DestroySkeleton> skel_;
    bpf_program* first_ = nullptr;  // the pair of tracepoint programs loaded and attached
    bpf_program* nested_ = nullptr;
    std::vector<bpf_program*>
        packet_programs_;            // those loaded and attached (BpfOptions::resets...)
    mutable std::mutex walk_mutex_;  // one walk at a time: a walk's counts live in .bss
    Transport transport_ = Transport::RingBuffer;
    uint32_t perf_buffer_pages_ = 0;
    bool event_details_ = true;
    uint32_t socket_table_capacity_ = 0;
    mutable std::mutex filters_mutex_;
    EventFilters filters_;
};

// True when the running kernel supports BPF ring buffers (Linux >= 5.8).
bool kernel_has_ring_buffer();

}  // namespace tcpstatesd

// The kernel half, loaded and attached: one RAII object owning the BPF object, its maps and its
// links. Construction either yields attached programs or throws BpfError with one line that
// names the cause and the fix. The programs count into maps (kernel/count_tables.hpp reads
// them) or, for `trace`, send one event per transition (kernel/event_source.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fd.hpp"
#include "kernel/reset_reasons.hpp"
#include "kernel/transport.hpp"
#include "tcpstates.h"

struct tcpstates_bpf;
struct bpf_program;
struct bpf_link;

namespace tcpstatesd {

// The defaults of the kernel objects' sizes (the configuration's events.* keys).
// Sockets the record table holds at once: allocated as used with the kernel's BTF (about 112
// bytes a socket, docs/performance.md), preallocated with a BTF file (events.btf_path), where
// the raw tracepoint needs it: a smaller default there.
constexpr uint32_t kDefaultSocketTableSize = 1u << 20;
constexpr uint32_t kDefaultPreallocatedSocketTableSize = 65536;
constexpr uint32_t kDefaultRingBufferBytes = 4u << 20;
constexpr uint32_t kDefaultPerfBufferPages = 64;

// The wake-up threshold of a batching reader (`trace`): an eighth of the ring (512 KiB of the
// default 4 MiB; docs/performance.md, "Wake-up threshold", measured 256 KiB and 1 MiB alike).
constexpr uint32_t batched_wakeup_bytes(uint32_t ring_buffer_bytes) {
    return ring_buffer_bytes / 8;
}

// What user space asks the kernel side to count or report. Empty port lists mean "every port".
struct EventFilters {
    int family = 0;  // 0 (both), AF_INET or AF_INET6
    std::vector<uint16_t> local_ports;
    std::vector<uint16_t> remote_ports;

    bool operator==(const EventFilters&) const = default;
};

// Which labels the programs put in the tuples they count under (struct tcpstates_tuple_key),
// and what a service port is. Live: a socket keeps the tuple it was first counted under.
struct TupleLabelSettings {
    bool port = false;           // some family carries `port`
    bool cgroup = false;         // some family carries `cgroup`
    bool duration_port = false;  // tcpstates_state_duration_seconds carries `port`
    bool duration_cgroup = false;
    bool handshake_rtt_port = false;  // tcpstates_handshake_rtt_seconds carries `port`
    bool handshake_rtt_cgroup = false;
    bool listening = false;       // every port listened on is a service port
    std::vector<uint16_t> ports;  // and these (labels.port.ports)

    bool operator==(const TupleLabelSettings&) const = default;
};

struct BpfOptions {
    Transport transport = Transport::Auto;
    uint32_t socket_table_size = kDefaultSocketTableSize;
    uint32_t ring_buffer_bytes = kDefaultRingBufferBytes;  // power of two, >= the page size
    uint32_t perf_buffer_pages = kDefaultPerfBufferPages;  // per CPU, power of two
    // `trace`'s events (addresses, pid, comm, socket address, timestamp) through the buffer,
    // or counts in the maps (the daemon).
    bool event_details = true;
    // Ring buffer only: wake the reader when this many bytes wait, not after every event
    // (0). The reader must then also drain on a timer (EventSource::kDrainInterval).
    uint32_t ring_buffer_wakeup_bytes = 0;
    EventFilters filters;
    TupleLabelSettings labels;
    // The duration buckets' upper bounds in nanoseconds (at most TCPSTATES_MAX_BUCKETS).
    std::vector<uint64_t> duration_bounds_ns;
    // The handshake RTT buckets' upper bounds in nanoseconds (at most TCPSTATES_MAX_BUCKETS).
    std::vector<uint64_t> handshake_rtt_bounds_ns;
    // Label tuples and labelled duration and handshake RTT histograms the count tables hold (each
    // of the two tables CountTables alternates between).
    uint32_t tuple_table_size = 1;
    uint32_t duration_table_size = 1;
    // The native histograms' schema (none: off) and the native buckets each native table holds.
    std::optional<int32_t> native_schema;
    uint32_t native_table_size = 1;
    // Exemplar candidates (series and CPU) each of the two exemplar tables holds
    // (kernel/exemplar_tables.hpp).
    uint32_t exemplar_table_size = 1;
    // Also attach the programs on the reset tracepoints (tcp:tcp_send_reset,
    // tcp:tcp_receive_reset) and the retransmission ones (tcp:tcp_retransmit_skb,
    // tcp:tcp_retransmit_synack). They need the kernel's own BTF: ignored with btf_path.
    bool resets = true;
    bool retransmits = true;
    // Empty: relocate against the kernel's own BTF and attach as BTF raw tracepoints (tp_btf).
    // Else a BTF file for a kernel without /sys/kernel/btf/vmlinux: the programs attach as
    // plain raw tracepoints, which need no kernel BTF, their tables are preallocated, and the
    // existing sockets cannot be walked.
    std::string btf_path;
};

// Totals of the programs' per-CPU counters (enum tcpstates_counter).
struct KernelCounters {
    uint64_t values[TCPSTATES_COUNTER_MAX] = {};
    uint64_t operator[](tcpstates_counter c) const { return values[c]; }
};

class BpfError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Turns a failed libbpf or bpf() call into a BpfError: what failed, why, and what to do.
[[noreturn]] void throw_bpf_error(const std::string& what, int err);

// Adds both families' overflow tuples (TCPSTATES_TUPLE_OVERFLOW), which the programs expect in
// every tuple table, to an empty one; a table for `tuples` tuples has room for them too.
void add_overflow_tuples(int table_fd);
uint32_t tuple_table_entries(uint32_t tuples);

class BpfProgram {
public:
    explicit BpfProgram(const BpfOptions& options);
    BpfProgram(const BpfProgram&) = delete;
    BpfProgram& operator=(const BpfProgram&) = delete;
    ~BpfProgram();

    // The transport actually in use (Auto resolved against the running kernel).
    Transport transport() const { return transport_; }
    // The map the event source reads: the ring buffer or the perf event array.
    int events_map_fd() const;
    uint32_t perf_buffer_pages() const { return perf_buffer_pages_; }
    bool event_details() const { return event_details_; }
    uint32_t socket_table_capacity() const { return socket_table_capacity_; }
    // Whether the tables are preallocated (the raw tracepoint, events.btf_path).
    bool preallocated() const { return preallocated_; }
    // The names of the reasons the programs count sent resets by (only "not_specified" on a
    // kernel whose tcp:tcp_send_reset passes none).
    const ResetReasons& reset_reasons() const { return reset_reasons_; }

    // Replaces the filters in place while the programs stay attached. No event is dropped
    // that both the old and the new filters would report (new ports are added before old ones
    // are removed; a switch is off while its list is empty). All or nothing: throws BpfError
    // with the filters in force unchanged (restored, when a map update fails halfway).
    void apply_filters(const EventFilters& requested);
    // Changes the labels new tuples carry and the service ports. Never throws.
    void apply_labels(const TupleLabelSettings& labels);
    // Turns the programs' exemplar candidates on or off (metrics.exemplars; off at load).
    // Never throws.
    void set_exemplars(bool on);
    // Tells the programs the exemplar tables were swapped: their hints of the slowest
    // candidate start over (bpf/exemplars.bpf.h). Call once the swap returned.
    void exemplar_tables_swapped();
    // The ports found listened on since the last call (the programs note them at listen()):
    // OR-ed into `words`, one bit per port.
    void add_listening_ports(const uint64_t (&words)[65536 / 64]);

    KernelCounters read_counters() const;
    // The transition programs' recursion misses that the nested program did not handle, plus
    // the packet programs' misses (nothing makes up for those): counts lost. A lower bound read
    // so that it never counts a miss whose handling is under way: the misses first, the
    // nested program's handled count after.
    uint64_t recursion_losses() const;
    // Records left behind: destroyed sockets both destroy programs missed, at most (a record
    // left so is reused at its address's reuse). Never less than the last value returned.
    uint64_t leaked_records() const;

    // The maps other parts of the daemon read and write (kernel/count_tables.hpp,
    // kernel/socket_walk.hpp).
    int tuple_tables_fd() const;
    int duration_tables_fd() const;
    int native_tables_fd() const;
    int exemplar_tables_fd() const;
    int durations_fd() const;
    int handshake_rtts_fd() const;
    int handshake_rtt_unmeasured_fd() const;
    int unknown_starts_fd() const;
    int walked_fd() const;
    int oldest_fd() const;
    // The count tables installed at load.
    int first_tuple_table_fd() const { return first_tuple_table_.get(); }
    int first_duration_table_fd() const { return first_duration_table_.get(); }
    int first_native_table_fd() const { return first_native_table_.get(); }
    uint32_t native_table_capacity() const { return native_table_capacity_; }
    int first_exemplar_table_fd() const { return first_exemplar_table_.get(); }
    // The walk's totals (mmapped .bss), written by the walk program.
    tcpstates_walk_totals& walk_totals() const;
    // Whether the existing sockets can be walked: not with a BTF file (iter/tcp needs the
    // kernel's own BTF).
    bool can_walk_sockets() const;
    bpf_link* walk_link() const;
    // The sweep (bpf/walk.bpf.h): the walk's generation, its namespace, the records listed.
    uint8_t next_walk_generation();
    uint64_t walked_net() const;
    int socket_records_fd() const;
    int stale_records_fd() const;
    int destroyed_records_fd() const;
    // The queues' walk (bpf/queues.bpf.h): its tables, what did not fit, and the ephemeral
    // port range it counts in (set before each walk).
    int listen_queues_fd() const;
    int listen_drops_fd() const;
    int listener_drops_fd() const;
    int listeners_fd() const;
    int destinations_fd() const;
    tcpstates_queue_walk_totals& queue_walk_totals() const;
    void set_ephemeral_range(uint16_t low, uint16_t high);
    // Writes the duration and handshake RTT buckets' bounds (nanoseconds) and the native
    // buckets' of `native_schema` (none: off) into the generation not in use and switches to it;
    // returns the new generation. The caller must make sure no program still uses the old one
    // before it writes again (CountTables::swap() waits for them).
    uint32_t switch_bucket_bounds(const std::vector<uint64_t>& duration_bounds_ns,
                                  const std::vector<uint64_t>& handshake_rtt_bounds_ns,
                                  std::optional<int32_t> native_schema);
    uint32_t bucket_generation() const;

private:
    // A port added to or removed from a filter map, for apply_filters to undo.
    struct PortChange {
        int map_fd;
        uint16_t port;
        bool added;
    };
    // Adds the ports of new_ports not in old_ports, then removes those of old_ports not in
    // new_ports (both sorted), noting each change in `done`.
    void replace_ports(int map_fd, const std::vector<uint16_t>& old_ports,
                       const std::vector<uint16_t>& new_ports, const char* which,
                       std::vector<PortChange>& done);

    struct DestroySkeleton {
        void operator()(tcpstates_bpf* skeleton) const;
    };

    Fd first_tuple_table_;
    Fd first_duration_table_;
    Fd first_native_table_;
    uint32_t native_table_capacity_ = 1;
    Fd first_exemplar_table_;
    std::unique_ptr<tcpstates_bpf, DestroySkeleton> skel_;
    bpf_program* first_ = nullptr;  // the transition programs loaded and attached
    bpf_program* nested_ = nullptr;
    bpf_program* destroy_ = nullptr;
    bpf_program* destroy_nested_ = nullptr;
    std::vector<bpf_program*> packet_programs_;  // those loaded (BpfOptions::resets...)
    Transport transport_ = Transport::RingBuffer;
    uint32_t perf_buffer_pages_ = 0;
    bool event_details_ = true;
    bool preallocated_ = false;
    ResetReasons reset_reasons_;
    uint32_t socket_table_capacity_ = 0;
    EventFilters filters_;  // in force; only the caller of apply_filters changes them
    mutable std::mutex losses_mutex_;
    mutable uint64_t recursion_losses_ = 0;  // the last value returned: never less
    mutable uint64_t leaked_records_ = 0;    // likewise
};

}  // namespace tcpstatesd

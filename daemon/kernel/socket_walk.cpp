#include "kernel/socket_walk.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>

#include "common/fd.hpp"
#include "common/read_file.hpp"
#include "kernel/bpf_maps.hpp"
#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

namespace {

// The walk counts what found no room under port 0: those keys must exist, with `value`.
void add_port_zero_keys(int map_fd, const void* value) {
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        for (uint8_t state = TCPSTATES_ESTABLISHED; state <= TCPSTATES_CLOSING; ++state) {
            const tcpstates_walk_key key{0, ipv6, state};
            if (bpf_map_update_elem(map_fd, &key, value, BPF_ANY) != 0)
                throw_bpf_error("preparing a walk of the TCP sockets", errno);
        }
}

constexpr uint64_t kNoSocket = UINT64_MAX;  // tcpstates_walk_oldest.since_ns of an empty key

// The entries the next walk sweeps (bpf/walk.bpf.h): records of the walked namespace, not in
// CLOSE, seen by neither this walk nor the one before; and destroyed sockets' entries, of any
// namespace. Read in batches: no lock held in the kernel meanwhile, whatever the table's size.
SocketWalk::RecordListing list_records_to_sweep(const BpfProgram& program, uint8_t generation) {
    const int stale_fd = program.stale_records_fd();
    const int destroyed_fd = program.destroyed_records_fd();
    const uint64_t net = program.walked_net();
    const uint8_t listed = 1;
    uint32_t stale_listed = 0, destroyed_listed = 0;
    SocketWalk::RecordListing listing;
    // Past a list's bound, the rest waits for the next listing.
    const auto list = [&](int fd, const void* key, uint32_t& count, uint32_t bound) {
        if (count < bound && bpf_map_update_elem(fd, key, &listed, BPF_ANY) == 0)
            ++count;
        else
            listing.complete = false;
    };
    for_each_entry(
        program.socket_records_fd(), "socket_records", sizeof(uint64_t), sizeof(tcpstates_socket),
        [&](const void* key, const void* value) {
            tcpstates_socket record;
            std::memcpy(&record, value, sizeof record);
            if (record.net == TCPSTATES_NET_DESTROYED) {
                ++listing.destroyed_records;
                list(destroyed_fd, key, destroyed_listed, TCPSTATES_MAX_DESTROYED_RECORDS);
            } else if (net != 0 && record.net == net && record.state != TCPSTATES_CLOSE &&
                       static_cast<uint8_t>(generation - record.walked) >= 2) {
                list(stale_fd, key, stale_listed, TCPSTATES_MAX_STALE_RECORDS);
            }
        });
    return listing;
}

// net.ipv4.ip_local_port_range of this thread's network namespace (the walked one), into the
// walk program; its size, 0 if it cannot be read (then the walk counts no destination).
uint32_t set_ephemeral_range(BpfProgram& program) {
    unsigned low = 0, high = 0;
    try {
        std::istringstream range(read_file("/proc/sys/net/ipv4/ip_local_port_range", 64));
        if (!(range >> low >> high) || low == 0 || high > 65535 || low > high) low = high = 0;
    } catch (const FileError&) {
        low = high = 0;
    }
    program.set_ephemeral_range(static_cast<uint16_t>(low), static_cast<uint16_t>(high));
    return high ? high - low + 1 : 0;
}

// The queues' tables after a walk (bpf/queues.bpf.h), and the listeners no longer followed:
// those two walks did not see (destroyed while their close was missed; two, as for the sweep,
// since a listen() may run while the walk passes its bucket).
void read_queues(const BpfProgram& program, uint8_t generation, SocketWalk& walk) {
    for_each_entry(program.listen_queues_fd(), "listen_queues", sizeof(tcpstates_walk_key),
                   sizeof(tcpstates_listen_queue), [&](const void* key, const void* value) {
                       tcpstates_walk_key k;
                       std::memcpy(&k, key, sizeof k);
                       std::memcpy(&walk.listen_queues[{k.ipv6, k.port}], value,
                                   sizeof(tcpstates_listen_queue));
                   });
    for_each_entry(program.listen_drops_fd(), "listen_drops", sizeof(tcpstates_walk_key),
                   sizeof(uint64_t), [&](const void* key, const void* value) {
                       tcpstates_walk_key k;
                       std::memcpy(&k, key, sizeof k);
                       std::memcpy(&walk.listen_drops[{k.ipv6, k.port}], value, sizeof(uint64_t));
                   });
    for_each_entry(program.destinations_fd(), "destinations", sizeof(tcpstates_destination_key),
                   sizeof(uint64_t), [&](const void* key, const void* value) {
                       tcpstates_destination_key k;
                       uint64_t sockets;
                       std::memcpy(&k, key, sizeof k);
                       std::memcpy(&sockets, value, sizeof sockets);
                       uint64_t& busiest = walk.busiest_destinations[{k.ipv6, k.port}];
                       busiest = std::max(busiest, sockets);
                   });
    std::vector<uint64_t> gone;
    for_each_entry(program.listener_drops_fd(), "listener_drops", sizeof(uint64_t),
                   sizeof(tcpstates_listener_drops), [&](const void* key, const void* value) {
                       tcpstates_listener_drops seen;
                       std::memcpy(&seen, value, sizeof seen);
                       if (static_cast<uint8_t>(generation - seen.walked) < 2) return;
                       uint64_t id;
                       std::memcpy(&id, key, sizeof id);
                       gone.push_back(id);
                   });
    for (uint64_t id : gone) bpf_map_delete_elem(program.listener_drops_fd(), &id);
}

// The ports of the listeners the programs follow, in every network namespace.
void add_followed_listeners(const BpfProgram& program, __u64 (&listening_ports)[65536 / 64]) {
    for_each_entry(program.listeners_fd(), "listeners", sizeof(tcpstates_listener_key),
                   sizeof(tcpstates_listener), [&](const void* key, const void*) {
                       tcpstates_listener_key k;
                       std::memcpy(&k, key, sizeof k);
                       listening_ports[k.port / 64] |= __u64{1} << (k.port % 64);
                   });
}

// The iterator runs in this thread's read() calls: its time is this thread's.
double thread_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

}  // namespace

SocketWalk walk_sockets(BpfProgram& program, SweepListing listing) {
    if (!program.can_walk_sockets())
        throw BpfError("walking the TCP sockets needs the kernel's BTF");
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    const int walked_fd = program.walked_fd();
    clear_map(walked_fd, "walked", sizeof(tcpstates_walk_key));
    const uint64_t zero = 0;
    add_port_zero_keys(walked_fd, &zero);
    const int oldest_fd = program.oldest_fd();
    clear_map(oldest_fd, "oldest", sizeof(tcpstates_walk_key));
    const tcpstates_walk_oldest none{kNoSocket, 0, 0};
    add_port_zero_keys(oldest_fd, &none);
    clear_map(program.listen_queues_fd(), "listen_queues", sizeof(tcpstates_walk_key));
    clear_map(program.destinations_fd(), "destinations", sizeof(tcpstates_destination_key));
    tcpstates_walk_totals& totals = program.walk_totals();
    std::memset(&totals, 0, sizeof totals);
    tcpstates_queue_walk_totals& queue_totals = program.queue_walk_totals();
    std::memset(&queue_totals, 0, sizeof queue_totals);
    SocketWalk walk;
    walk.ephemeral_ports = set_ephemeral_range(program);
    const uint8_t generation = program.next_walk_generation();
    run_iterator(program.walk_link(), "walking the TCP sockets");

    std::memcpy(&walk.totals, &totals, sizeof totals);
    add_followed_listeners(program, walk.totals.listening_ports);
    std::memcpy(&walk.queue_totals, &queue_totals, sizeof queue_totals);
    read_queues(program, generation, walk);
    for_each_entry(walked_fd, "walked", sizeof(tcpstates_walk_key), sizeof(uint64_t),
                   [&](const void* key, const void* value) {
                       SocketWalk::Count count{};
                       std::memcpy(&count.key, key, sizeof count.key);
                       std::memcpy(&count.sockets, value, sizeof count.sockets);
                       if (count.sockets != 0) walk.walked.push_back(count);
                   });
    for_each_entry(oldest_fd, "oldest", sizeof(tcpstates_walk_key), sizeof(tcpstates_walk_oldest),
                   [&](const void* key, const void* value) {
                       tcpstates_walk_oldest found;
                       std::memcpy(&found, value, sizeof found);
                       if (found.since_ns == kNoSocket) return;
                       SocketWalk::Oldest oldest{};
                       std::memcpy(&oldest.key, key, sizeof oldest.key);
                       oldest.since_ns = found.since_ns;
                       oldest.start_unknown = found.start_unknown;
                       walk.oldest.push_back(oldest);
                   });
    // This walk swept what the last listing listed: no walk sweeps a list twice.
    clear_map(program.stale_records_fd(), "stale_records", sizeof(uint64_t));
    clear_map(program.destroyed_records_fd(), "destroyed_records", sizeof(uint64_t));
    if (listing == SweepListing::read_record_table)
        walk.listing = list_records_to_sweep(program, generation);
    walk.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    walk.cpu_seconds = thread_cpu_seconds() - cpu_start;
    return walk;
}

}  // namespace tcpstatesd

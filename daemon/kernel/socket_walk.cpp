#include "kernel/socket_walk.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "common/fd.hpp"
#include "kernel/bpf_maps.hpp"
#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

namespace {

// Runs an iterator to its end (the programs write nothing: their results are in maps).
void run_iterator(bpf_link* link) {
    const Fd walk(bpf_iter_create(bpf_link__fd(link)));
    if (!walk) throw_bpf_error("starting a walk of the TCP sockets", errno);
    char buffer[4096];
    for (;;) {
        const ssize_t n = read(walk.get(), buffer, sizeof buffer);
        if (n == 0) return;
        // EAGAIN: the kernel pauses a read that visited a million sockets without output;
        // reading again goes on from there.
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw_bpf_error("walking the TCP sockets", errno);
    }
}

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

// The records the next walk sweeps (bpf/walk.bpf.h, the sweep): of the walked namespace, not in
// CLOSE, seen by neither this walk nor the one before. Read in batches: no lock held in the
// kernel meanwhile, whatever the table's size.
void list_stale_records(const BpfProgram& program, uint8_t generation) {
    const int stale_fd = program.stale_records_fd();
    clear_map(stale_fd, "stale_records", sizeof(uint64_t));
    const uint64_t net = program.walked_net();
    if (net == 0) return;
    const uint8_t listed = 1;
    uint32_t count = 0;
    for_each_entry(program.socket_records_fd(), "socket_records", sizeof(uint64_t),
                   sizeof(tcpstates_socket), [&](const void* key, const void* value) {
                       tcpstates_socket record;
                       std::memcpy(&record, value, sizeof record);
                       const bool stale = record.net == net && record.state != TCPSTATES_CLOSE &&
                                          static_cast<uint8_t>(generation - record.walked) >= 2;
                       // The rest waits for the next walk's list.
                       if (!stale || count >= TCPSTATES_MAX_STALE_RECORDS) return;
                       if (bpf_map_update_elem(stale_fd, key, &listed, BPF_ANY) == 0) ++count;
                   });
}

// The iterator runs in this thread's read() calls: its time is this thread's.
double thread_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

}  // namespace

SocketWalk walk_sockets(BpfProgram& program) {
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
    tcpstates_walk_totals& totals = program.walk_totals();
    std::memset(&totals, 0, sizeof totals);
    const uint8_t generation = program.next_walk_generation();
    run_iterator(program.walk_link());

    SocketWalk walk;
    std::memcpy(&walk.totals, &totals, sizeof totals);
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
    list_stale_records(program, generation);
    walk.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    walk.cpu_seconds = thread_cpu_seconds() - cpu_start;
    return walk;
}

}  // namespace tcpstatesd

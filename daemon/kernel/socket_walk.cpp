#include "kernel/socket_walk.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
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

// Runs the iterator to its end (the program writes nothing: its results are in maps).
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

// The walk counts what found no room under port 0: those keys must exist.
void add_port_zero_keys(int walked_fd) {
    const uint64_t zero = 0;
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        for (uint8_t state = TCPSTATES_ESTABLISHED; state <= TCPSTATES_CLOSING; ++state) {
            const tcpstates_walk_key key{0, ipv6, state};
            if (bpf_map_update_elem(walked_fd, &key, &zero, BPF_ANY) != 0)
                throw_bpf_error("preparing a walk of the TCP sockets", errno);
        }
}

}  // namespace

SocketWalk walk_sockets(const BpfProgram& program) {
    if (!program.can_walk_sockets())
        throw BpfError("walking the TCP sockets needs the kernel's BTF");
    const auto start = std::chrono::steady_clock::now();
    const int walked_fd = program.walked_fd();
    clear_map(walked_fd, "walked", sizeof(tcpstates_walk_key));
    add_port_zero_keys(walked_fd);
    tcpstates_walk_totals& totals = program.walk_totals();
    std::memset(&totals, 0, sizeof totals);
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
    walk.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return walk;
}

}  // namespace tcpstatesd

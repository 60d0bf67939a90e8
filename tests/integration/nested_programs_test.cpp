// The nested programs (bpf/transitions.bpf.h) handle a hit exactly when the kernel skipped the
// first program for it, which they read in the first program's recursion mark on their CPU
// (bpf/recursion_marks.bpf.h). The real programs, attached, on a connection of the test's own.
// An interrupt's transition during the first program's run cannot be made to order, so the test
// also points the nested program at a mark it knows to be set whenever it reads it, its own (the
// kernel sets it for the nested program's run, Linux >= 6.1): each transition is then handled
// by both, which only a mark read at its right address on every CPU shows.
#include <bpf/bpf.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "event_collector.hpp"
#include "kernel/bpf_maps.hpp"
#include "kernel/recursion_marks.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

template <typename Info>
Info info_of(int fd) {
    return tcpstatesd::object_info<Info>(fd, "reading a loaded program's or map's information");
}

// The maps a loaded program uses, by id.
std::vector<uint32_t> map_ids_of(int program_fd) {
    std::vector<uint32_t> ids(info_of<bpf_prog_info>(program_fd).nr_map_ids);
    bpf_prog_info info{};
    info.nr_map_ids = static_cast<uint32_t>(ids.size());
    info.map_ids = reinterpret_cast<uintptr_t>(ids.data());
    uint32_t size = sizeof(info);
    REQUIRE(bpf_obj_get_info_by_fd(program_fd, &info, &size) == 0);
    return ids;
}

// The nested transition program of `tracer` and its `recursion_marks` map: of the loaded
// programs, the one that uses both the tracer's ring buffer and a map of that name (the first
// transition program reads no mark; the nested destroy program sends no event).
struct NestedProgram {
    Fd program;
    Fd marks;
};

NestedProgram nested_program_of(const Tracer& tracer) {
    const uint32_t ring = info_of<bpf_map_info>(tracer.program.events_map_fd()).id;
    NestedProgram found;
    for (uint32_t id = 0; bpf_prog_get_next_id(id, &id) == 0;) {
        Fd program(bpf_prog_get_fd_by_id(id));
        if (!program) continue;  // unloaded meanwhile
        const auto maps = map_ids_of(program.get());
        if (std::find(maps.begin(), maps.end(), ring) == maps.end()) continue;
        for (uint32_t map_id : maps) {
            Fd map(bpf_map_get_fd_by_id(map_id));
            if (!map || std::strcmp(info_of<bpf_map_info>(map.get()).name, "recursion_marks") != 0)
                continue;
            REQUIRE_FALSE(found.program);  // one nested transition program
            found = {std::move(program), std::move(map)};
            break;
        }
    }
    REQUIRE(found.program);
    return found;
}

// The transitions of the client of one connection to a listener of the test's, as traced by a
// tracer of client_side(): the only socket with that remote port.
std::vector<std::string> client_transitions(Tracer& tracer, const Fd& listener) {
    run_connection(AF_INET, listener);
    // The client's last transition, FIN_WAIT2 -> CLOSE, is received last (once by each program
    // that handles it): wait for it, then for anything still in the buffer.
    REQUIRE(tracer.wait_until([&] {
        const auto changes = state_changes(tracer.events());
        return !changes.empty() && changes.back().transition.new_state == TCPSTATES_CLOSE;
    }));
    tracer.drain();
    return transitions(state_changes(tracer.events()));
}

tcpstatesd::BpfOptions client_side(uint16_t server_port) {
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;
    options.filters.remote_ports = {server_port};
    options.retransmits = false;
    options.resets = false;
    return options;
}

}  // namespace

TEST_CASE(
    "the nested transition program handles a transition only where the first program's "
    "recursion mark is set",
    "[nested]") {
    REQUIRE_BPF();
    Fd listener = listen_on_loopback(AF_INET);
    Tracer tracer(client_side(local_port(listener)));

    SECTION("the first program's marks: each transition once") {
        CHECK(client_transitions(tracer, listener) == kClientLife);
    }
    SECTION("a mark set whenever the nested program reads it: each transition twice") {
        const NestedProgram nested = nested_program_of(tracer);
        // Its own mark as the first program's, on every CPU: the nested program handles every
        // transition, before the first program does (it is attached first). Installed while it
        // runs, unlike the daemon's: the test's connection starts after.
        tcpstatesd::install_recursion_marks(nested.program.get(), nested.program.get(),
                                            nested.marks.get());
        std::vector<std::string> twice;
        for (const auto& transition : kClientLife) twice.insert(twice.end(), 2, transition);
        CHECK(client_transitions(tracer, listener) == twice);
    }
    CHECK(tracer.source.losses().total() == 0);
}

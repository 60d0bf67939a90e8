// The walk's oldest entry time per family, state and service port (what
// tcpstates_state_oldest_seconds is computed from): the time the programs saw a socket enter its
// state, or, for a socket older than the programs, the time a walk first found it there, flagged
// unknown. Against the real kernel, also in the kernel matrix (Debian 12's 6.1). The tests'
// sockets are told apart by their service ports, listed ports of their own.
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>

#include "kernel/bpf_program.hpp"
#include "kernel/socket_walk.hpp"
#include "loopback.hpp"
#include "metrics/counted_metrics.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

// bpf_ktime_get_ns()'s clock.
uint64_t monotonic_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

// A server left in CLOSE_WAIT (its client closed; it read the EOF and stays open), with the
// times that bound its entry: just before the client's close(), just after the EOF.
struct CloseWait {
    Fd server;
    uint64_t closing = 0, seen = 0;

    explicit CloseWait(const Fd& listener) {
        Fd client = connect_loopback(AF_INET, local_port(listener));
        server = accept_one(listener);
        closing = monotonic_ns();
        client = Fd();
        expect_eof(server);
        seen = monotonic_ns();
    }
};

std::optional<tcpstatesd::SocketWalk::Oldest> close_wait_on(const tcpstatesd::SocketWalk& walk,
                                                            uint16_t port) {
    for (const auto& oldest : walk.oldest)
        if (oldest.key.port == port && oldest.key.ipv6 == 0 &&
            oldest.key.state == TCPSTATES_CLOSE_WAIT)
            return oldest;
    return std::nullopt;
}

}  // namespace

TEST_CASE(
    "a walk finds each state's oldest entry time per service port, and for a socket older than "
    "the programs the time it first found it, flagged unknown",
    "[walk]") {
    REQUIRE_BPF();
    Fd old_listener = listen_on_loopback(AF_INET);
    const uint16_t old_port = local_port(old_listener);
    const CloseWait old(old_listener);
    Fd listener = listen_on_loopback(AF_INET);
    const uint16_t port = local_port(listener);

    tcpstatesd::LabelsConfig labels;
    labels.port.ports = {std::min(old_port, port), std::max(old_port, port)};
    tcpstatesd::BpfOptions options;
    options.event_details = false;
    options.labels = tcpstatesd::tuple_label_settings(labels);
    options.duration_bounds_ns = tcpstatesd::bounds_ns({1});
    tcpstatesd::BpfProgram program(options);
    REQUIRE(program.can_walk_sockets());

    CloseWait first(listener);
    CloseWait second(listener);
    const uint64_t walking = monotonic_ns();
    tcpstatesd::SocketWalk walk =
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
    const uint64_t walked = monotonic_ns();

    // Older than the programs: the first walk's time (after the load), never an earlier one.
    auto found = close_wait_on(walk, old_port);
    REQUIRE(found);
    CHECK(found->start_unknown == 1);
    CHECK(found->since_ns >= walking);
    CHECK(found->since_ns <= walked);
    const uint64_t first_found = found->since_ns;
    // Seen entering CLOSE_WAIT: the older of the two, exactly.
    found = close_wait_on(walk, port);
    REQUIRE(found);
    CHECK(found->start_unknown == 0);
    CHECK(found->since_ns >= first.closing);
    CHECK(found->since_ns <= first.seen);

    // A later walk keeps the old socket's first sighting; with the older one gone, the next.
    first.server = Fd();
    walk = tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
    found = close_wait_on(walk, old_port);
    REQUIRE(found);
    CHECK(found->start_unknown == 1);
    CHECK(found->since_ns == first_found);
    found = close_wait_on(walk, port);
    REQUIRE(found);
    CHECK(found->start_unknown == 0);
    CHECK(found->since_ns >= second.closing);
    CHECK(found->since_ns <= second.seen);

    // None left: no entry.
    second.server = Fd();
    CHECK_FALSE(close_wait_on(
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table), port));
}

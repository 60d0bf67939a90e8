// The real program against real loopback connections made by the test: the exact
// transitions of every socket of a connection, their addresses, ports and attribution, and
// their durations against the test's own clock.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "event_collector.hpp"
#include "kernel_facts.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;
using Clock = std::chrono::steady_clock;
using Strings = std::vector<std::string>;

namespace {

// Checks that hold for every socket life a fresh program sees from its start:
// START_UNKNOWN exactly on the first event, every later duration positive and equal to the
// time between the socket's consecutive events, every event inside the test's time window.
void check_timing(const std::vector<tcpstates_event>& life, Clock::time_point window_begin,
                  Clock::time_point window_end) {
    for (size_t i = 0; i < life.size(); ++i) {
        INFO("event " << i << ": " << describe(life[i]));
        CHECK(life[i].ts_ns >= steady_ns(window_begin));
        CHECK(life[i].ts_ns <= steady_ns(window_end));
        if (i == 0) {
            CHECK(life[i].transition.flags == TCPSTATES_EVENT_START_UNKNOWN);
            CHECK(life[i].transition.duration_ns == 0);
        } else {
            CHECK(life[i].transition.flags == 0);
            CHECK(life[i].transition.duration_ns > 0);
            CHECK(life[i].transition.duration_ns == life[i].ts_ns - life[i - 1].ts_ns);
        }
    }
}

// Sockets this test opens (connect, listen, and the children of its listeners) are owned by
// this process, whichever task the kernel ran their transitions on (softirq, mostly), and are
// of the origin their first transition says.
void check_owned_by_us(const std::vector<tcpstates_event>& life, uint8_t origin) {
    const auto cgroup = current_cgroup_id();
    for (const auto& event : life) {
        INFO(describe(event));
        CHECK(event.owner.pid == static_cast<uint32_t>(getpid()));
        CHECK(comm_of(event) == current_comm());
        CHECK(event.transition.cgroup_id == event.owner.cgroup_id);
        if (cgroup)
            CHECK(event.owner.cgroup_id == *cgroup);
        else  // no cgroup2 mount to read it from: the root cgroup's id, never 0
            CHECK(event.owner.cgroup_id != 0);
        CHECK(event.transition.origin == origin);
    }
}

// Unfiltered, as `tcpstatesd trace` runs by default: a ring buffer big enough that other
// processes' traffic does not push a test's events out while it looks away.
tcpstatesd::BpfOptions unfiltered() {
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;
    options.ring_buffer_bytes = 32u << 20;
    return options;
}

void check_endpoints(const tcpstates_event& event, int family, uint16_t lport, uint16_t rport) {
    INFO(describe(event));
    CHECK(event.transition.family == family);
    CHECK(event.transition.lport == lport);
    CHECK(event.transition.rport == rport);
    CHECK(is_loopback(family, event.laddr));
    if (rport == 0)
        CHECK(is_unspecified(event.raddr));
    else
        CHECK(is_loopback(family, event.raddr));
}

// Other processes' connections (a benchmark, say) must not crowd this test's events out of
// the buffers, so each program watches only the server's port: one as the local port (the
// listener and the accepted socket), one as the remote port (the client, including its first
// event, which has no local port yet).
struct PortTracers {
    PortTracers(tcpstatesd::Transport transport, uint16_t port)
        : server_side(watching(transport, &tcpstatesd::EventFilters::local_ports, port)),
          client_side(watching(transport, &tcpstatesd::EventFilters::remote_ports, port)) {}

    static tcpstatesd::BpfOptions watching(tcpstatesd::Transport transport,
                                           std::vector<uint16_t> tcpstatesd::EventFilters::*ports,
                                           uint16_t port) {
        tcpstatesd::BpfOptions options;
        options.transport = transport;
        options.filters.*ports = {port};
        // A retransmission answers an ACK later than the timeout (a starved machine: a kernel
        // matrix guest beside the parallel suite); it is no transition, so not traced here.
        options.retransmits = false;
        return options;
    }

    Tracer server_side;
    Tracer client_side;
};

}  // namespace

TEST_CASE("a connection's full life, client closing first, is reported exactly", "[lifecycle]") {
    REQUIRE_BPF();
    const int family = GENERATE(AF_INET, AF_INET6);
    const auto transport =
        GENERATE(tcpstatesd::Transport::RingBuffer, tcpstatesd::Transport::PerfBuffer);
    INFO(family_label(family) << " over " << tcpstatesd::transport_name(transport));

    Fd listener = bind_loopback(family);
    const uint16_t server_port = local_port(listener);
    PortTracers tracers(transport, server_port);
    REQUIRE(tracers.server_side.program.transport() == transport);

    const auto begin = Clock::now();
    start_listening(listener);
    const auto connect_start = Clock::now();
    Fd client = connect_loopback(family, server_port);
    const uint16_t client_port = local_port(client);
    Fd server = accept_one(listener);
    send_all(client, "request");
    REQUIRE(recv_exact(server, 7) == "request");
    send_all(server, "reply");
    REQUIRE(recv_exact(client, 5) == "reply");

    // Both sides stay ESTABLISHED at least this long, as the test's clock measures it.
    const auto hold_start = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto hold_end = Clock::now();

    const auto client_close_start = Clock::now();
    client.reset();
    const auto client_closed = Clock::now();
    expect_eof(server);
    const auto eof_seen = Clock::now();
    // The server stays in CLOSE_WAIT at least this long.
    const auto half_closed_start = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto half_closed_end = Clock::now();
    server.reset();
    const auto server_closed = Clock::now();
    listener.reset();
    const auto listener_closed = Clock::now();

    const auto is_client = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == client_port &&
               e.transition.rport == server_port;
    };
    const auto is_child = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == server_port &&
               e.transition.rport == client_port;
    };
    const auto is_listener = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == server_port &&
               e.transition.rport == 0;
    };
    Tracer& server_side = tracers.server_side;
    Tracer& client_side = tracers.client_side;
    REQUIRE(
        client_side.wait_until([&] { return ended(life_of(client_side.events(), is_client)); }));
    REQUIRE(server_side.wait_until([&] {
        return ended(life_of(server_side.events(), is_child)) &&
               ended(life_of(server_side.events(), is_listener));
    }));
    // Transitions driven by arriving packets may be processed late (by ksoftirqd on a busy
    // machine), after the system call that sent them: the window ends when all were received.
    const auto end = Clock::now();
    for (const Tracer* tracer : {&server_side, &client_side}) {
        CHECK(tracer->source.losses().total() == 0);
    }

    {
        INFO("the client: SYN_SENT with no local port yet, then the active close");
        const auto life = life_of(client_side.events(), is_client);
        REQUIRE(transitions(life) == Strings{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED",
                                             "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2",
                                             "FIN_WAIT2->CLOSE"});
        check_endpoints(life[0], family, 0, server_port);
        for (size_t i = 1; i < life.size(); ++i)
            check_endpoints(life[i], family, client_port, server_port);
        check_owned_by_us(life, TCPSTATES_ORIGIN_ACTIVE);
        check_timing(life, begin, end);
        CHECK(life[1].ts_ns >= steady_ns(connect_start));
        CHECK(life[2].ts_ns >= steady_ns(client_close_start));
        CHECK(life[2].ts_ns <= steady_ns(client_closed));
        // ESTABLISHED from inside connect() until inside close().
        CHECK(life[2].transition.duration_ns >= nanoseconds(hold_end - hold_start));
        CHECK(life[2].transition.duration_ns <= nanoseconds(client_closed - connect_start));
    }
    {
        INFO("the accepted socket: cloned from the listener, then the passive close");
        const auto life = life_of(server_side.events(), is_child);
        REQUIRE(transitions(life) == Strings{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED",
                                             "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK",
                                             "LAST_ACK->CLOSE"});
        check_endpoints(life[0], family, server_port,
                        child_has_peer_on_syn_recv() ? client_port : 0);
        for (size_t i = 1; i < life.size(); ++i)
            check_endpoints(life[i], family, server_port, client_port);
        check_owned_by_us(life, TCPSTATES_ORIGIN_PASSIVE);  // inherited from the listener
        check_timing(life, begin, end);
        // ESTABLISHED from the client's handshake (before accept() returned) until its FIN
        // arrived (before recv() saw the end of the stream).
        CHECK(life[2].transition.duration_ns >= nanoseconds(hold_end - hold_start));
        CHECK(life[2].transition.duration_ns <= nanoseconds(eof_seen - connect_start));
        // CLOSE_WAIT from that FIN until the server's own close().
        CHECK(life[3].transition.duration_ns >= nanoseconds(half_closed_end - half_closed_start));
        CHECK(life[3].transition.duration_ns <= nanoseconds(server_closed - client_close_start));
    }
    {
        INFO("the listener");
        const auto life = life_of(server_side.events(), is_listener);
        REQUIRE(transitions(life) == Strings{"CLOSE->LISTEN", "LISTEN->CLOSE"});
        for (const auto& e : life) check_endpoints(e, family, server_port, 0);
        check_owned_by_us(life, TCPSTATES_ORIGIN_LISTENER);
        check_timing(life, begin, end);
        CHECK(life[1].transition.duration_ns >=
              nanoseconds(hold_end - hold_start) +
                  nanoseconds(half_closed_end - half_closed_start));
        CHECK(life[1].transition.duration_ns <= nanoseconds(listener_closed - begin));
    }
}

TEST_CASE("a refused connect goes from SYN_SENT back to CLOSE, refused by a RST sent for no socket",
          "[lifecycle]") {
    REQUIRE_BPF();
    const int family = GENERATE(AF_INET, AF_INET6);
    INFO(family_label(family));
    Tracer tracer(unfiltered());

    // Bound but not listening: the port stays ours, and a SYN to it is answered with RST.
    Fd closed_port = bind_loopback(family);
    const uint16_t port = local_port(closed_port);
    Fd client = tcp_socket(family);
    const auto begin = Clock::now();
    REQUIRE(try_connect(client, family, port) == ECONNREFUSED);
    const auto end = Clock::now();

    // Its connect() event: no local port yet (which no accepted socket, foreign or not,
    // has), and the remote port is ours.
    const auto is_client = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == 0 &&
               e.transition.rport == port;
    };
    // The RST answering the SYN: sent for a segment that found no socket (our port is bound,
    // not listening), so in CLOSE, with the segment's ports seen from our side and no owner.
    const auto is_refusal = [&](const tcpstates_event& e) {
        return e.transition.kind == TCPSTATES_KIND_RESET_SENT && e.transition.family == family &&
               e.transition.lport == port;
    };
    const auto refusal = [&] { return first_of(tracer.events(), is_refusal); };
    const bool rst_traced = traces_socketless_resets();
    REQUIRE(tracer.wait_until([&] {
        return ended(life_of(tracer.events(), is_client)) && (!rst_traced || refusal() != nullptr);
    }));
    CHECK(tracer.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);
    const auto life = life_of(tracer.events(), is_client);
    REQUIRE(transitions(life) ==
            Strings{"CLOSE->SYN_SENT", "RST received in SYN_SENT", "SYN_SENT->CLOSE"});
    check_endpoints(life[0], family, 0, port);
    CHECK(is_loopback(family, life[2].laddr));
    CHECK(is_loopback(family, life[2].raddr));
    check_owned_by_us(life, TCPSTATES_ORIGIN_ACTIVE);
    check_timing(state_changes(life), begin, end);
    // The reason is on the socket when it moves to CLOSE.
    CHECK(life[2].transition.close_error == ECONNREFUSED);
    CHECK(life[1].transition.close_error == 0);

    if (!rst_traced) {
        CHECK(refusal() == nullptr);
        return;
    }
    const tcpstates_event& rst = *refusal();
    CHECK(rst.skaddr == 0);
    CHECK(rst.transition.new_state == TCPSTATES_CLOSE);
    CHECK(rst.transition.old_state == TCPSTATES_CLOSE);
    CHECK(rst.transition.rport == life[2].transition.lport);
    CHECK(rst.owner.pid == 0);
    CHECK(rst.transition.cgroup_id == 0);
    CHECK(is_loopback(family, rst.laddr));
    CHECK(is_loopback(family, rst.raddr));
}

// No ';' in a test's name: catch_discover_tests would cut it there.
TEST_CASE(
    "an abort (SO_LINGER 0) sends its RST in the state it aborted, under its owner, and both "
    "ends close",
    "[lifecycle]") {
    REQUIRE_BPF();
    const int family = GENERATE(AF_INET, AF_INET6);
    INFO(family_label(family));
    Tracer tracer(unfiltered());

    Fd listener = listen_on_loopback(family);
    const uint16_t port = local_port(listener);
    Fd client = connect_loopback(family, port);
    Fd server = accept_one(listener);
    const uint16_t client_port = local_port(client);
    const linger abort_on_close{1, 0};
    REQUIRE(setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abort_on_close,
                       sizeof abort_on_close) == 0);
    client = Fd();  // close(): the kernel moves it to CLOSE, then sends the RST

    const auto is_client = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == client_port &&
               e.transition.rport == port;
    };
    const auto is_server = [&](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == port &&
               e.transition.rport == client_port;
    };
    const auto abort_rst = [&] {
        return first_of(tracer.events(), [&](const tcpstates_event& e) {
            return e.transition.kind == TCPSTATES_KIND_RESET_SENT && is_client(e);
        });
    };
    REQUIRE(tracer.wait_until([&] {
        return ended(life_of(tracer.events(), is_client)) &&
               ended(life_of(tracer.events(), is_server)) && abort_rst() != nullptr;
    }));
    const auto client_life = life_of(tracer.events(), is_client);
    const auto server_life = life_of(tracer.events(), is_server);
    CHECK(transitions(client_life) ==
          Strings{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->CLOSE"});
    CHECK(transitions(server_life) == Strings{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED",
                                              "RST received in ESTABLISHED", "ESTABLISHED->CLOSE"});
    // The aborting side has no error yet when it moves to CLOSE (the close reason says reset
    // from the state it leaves); the receiving side has ECONNRESET.
    CHECK(client_life.back().transition.close_error == 0);
    CHECK(server_life.back().transition.close_error == ECONNRESET);

    const tcpstates_event& rst = *abort_rst();
    CHECK(rst.transition.new_state == TCPSTATES_ESTABLISHED);
    CHECK(rst.skaddr == client_life.back().skaddr);
    check_owned_by_us({rst}, TCPSTATES_ORIGIN_ACTIVE);
    check_owned_by_us(server_life, TCPSTATES_ORIGIN_PASSIVE);
}

// The LRU socket table under more open sockets than it can hold: the program keeps
// reporting every transition, evicts, and never computes a duration from a wrong start.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <map>

#include "event_collector.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"
#include "tcp_state.hpp"

using namespace itest;
using Strings = std::vector<std::string>;

TEST_CASE("a socket table smaller than the open sockets evicts but never reports a wrong start",
          "[socket-table]") {
    REQUIRE_BPF();
    constexpr uint32_t kTableSize = 16;
    constexpr size_t kConnections = 64;  // 129 sockets open at once: client, accepted, listener

    // All bound before the program loads, so that one local-port allow-list names every socket
    // of the test and keeps other processes' traffic out of the buffer. The table still sees
    // every socket on the system: it is updated before the port filters run.
    Fd listener = bind_loopback(AF_INET);
    const uint16_t server_port = local_port(listener);
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;
    options.socket_table_size = kTableSize;
    options.filters.local_ports = {server_port};
    std::vector<Fd> clients;
    std::vector<uint16_t> client_ports;
    for (size_t i = 0; i < kConnections; ++i) {
        clients.push_back(bind_loopback(AF_INET));
        client_ports.push_back(local_port(clients.back()));
        options.filters.local_ports.push_back(client_ports.back());
    }
    Tracer tracer(options);
    REQUIRE(tracer.program.socket_table_capacity() == kTableSize);

    start_listening(listener);
    std::vector<Fd> servers;
    for (size_t i = 0; i < kConnections; ++i) {
        REQUIRE(try_connect(clients[i], AF_INET, server_port) == 0);
        servers.push_back(accept_one(listener));
        tracer.source.consume();
    }
    // All open: the table is as full as it gets, and never fuller than its size.
    const size_t open_entries = tracer.program.for_each_socket([](const tcpstates_socket&) {});
    CHECK(open_entries > 0);
    CHECK(open_entries <= kTableSize);
    for (size_t i = 0; i < kConnections; ++i) {
        clients[i].reset();
        expect_eof(servers[i]);
        servers[i].reset();
        tracer.source.consume();
    }
    listener.reset();

    const auto endpoints = [](uint16_t lport, uint16_t rport) -> EventMatch {
        return [=](const tcpstates_event& e) { return e.lport == lport && e.rport == rport; };
    };
    std::vector<EventMatch> sockets{endpoints(server_port, 0)};
    for (uint16_t client_port : client_ports) {
        sockets.push_back(endpoints(client_port, server_port));
        sockets.push_back(endpoints(server_port, client_port));
    }
    REQUIRE(tracer.wait_until([&] {
        for (const auto& socket : sockets)
            if (!ended(life_of(tracer.events(), socket))) return false;
        return true;
    }));
    // Every transition of every socket arrived: what follows may rely on having them all.
    REQUIRE(tracer.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);

    // The program kept reporting every socket's whole life, evictions notwithstanding.
    for (size_t i = 0; i < kConnections; ++i) {
        INFO("connection " << i << ", client port " << client_ports[i]);
        CHECK(transitions(life_of(tracer.events(), sockets[1 + 2 * i])) ==
              Strings{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->FIN_WAIT1",
                      "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"});
        CHECK(transitions(life_of(tracer.events(), sockets[2 + 2 * i])) ==
              Strings{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT",
                      "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"});
    }

    // No duration from a wrong start: every known duration is exactly the time since the
    // same socket's previous transition, which the test received.
    std::map<uint64_t, tcpstates_event> previous;
    size_t unknown_starts = 0;
    for (const auto& e : chronological(tracer.events())) {
        INFO(describe(e));
        const auto before = previous.find(e.skaddr);
        if (e.flags & TCPSTATES_EVENT_START_UNKNOWN) {
            ++unknown_starts;
            CHECK(e.duration_ns == 0);
        } else {
            REQUIRE(before != previous.end());
            CHECK(before->second.new_state == e.old_state);
            CHECK(e.duration_ns == e.ts_ns - before->second.ts_ns);
        }
        if (e.new_state == tcpstatesd::kTcpClose)
            previous.erase(e.skaddr);
        else
            previous[e.skaddr] = e;
    }

    // Evicted: inserted, neither deleted on CLOSE nor still in the table.
    const auto counters = tracer.program.read_counters();
    const size_t present = tracer.program.for_each_socket([](const tcpstates_socket&) {});
    INFO("inserted " << counters[TCPSTATES_COUNTER_TABLE_INSERT] << ", deleted "
                     << counters[TCPSTATES_COUNTER_TABLE_DELETE] << ", present " << present
                     << ", insert failed " << counters[TCPSTATES_COUNTER_TABLE_INSERT_FAILED]);
    CHECK(present <= kTableSize);
    CHECK(counters[TCPSTATES_COUNTER_TABLE_INSERT] >
          counters[TCPSTATES_COUNTER_TABLE_DELETE] + present);
    // Without evictions, each socket's first event would be its only unknown start.
    CHECK(unknown_starts > sockets.size());
}

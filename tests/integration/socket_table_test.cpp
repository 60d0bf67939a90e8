// The socket table: a closed socket is forgotten (its address is soon reused), and an LRU
// table holding fewer sockets than are open keeps reporting every transition, evicts, and
// never computes a duration from a wrong start.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <map>

#include "event_collector.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"
#include "tcp_state.hpp"

using namespace itest;
using Strings = std::vector<std::string>;

namespace {

const Strings kClientLife{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED", "ESTABLISHED->FIN_WAIT1",
                          "FIN_WAIT1->FIN_WAIT2", "FIN_WAIT2->CLOSE"};
const Strings kServerLife{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED", "ESTABLISHED->CLOSE_WAIT",
                          "CLOSE_WAIT->LAST_ACK", "LAST_ACK->CLOSE"};

// A listener and client sockets, all bound before the program loads, so that one local-port
// allow-list names every socket of the test and keeps other processes' traffic out of the
// buffer. The socket table still sees every socket on the system: it is updated before the
// port filters run.
struct BoundSockets {
    explicit BoundSockets(size_t client_count) : listener(bind_loopback(AF_INET)) {
        server_port = local_port(listener);
        for (size_t i = 0; i < client_count; ++i) {
            clients.push_back(bind_loopback(AF_INET));
            client_ports.push_back(local_port(clients.back()));
        }
    }

    tcpstatesd::BpfOptions options(uint32_t socket_table_size) const {
        tcpstatesd::BpfOptions o;
        o.transport = tcpstatesd::Transport::RingBuffer;
        o.socket_table_size = socket_table_size;
        o.filters.local_ports = client_ports;
        o.filters.local_ports.push_back(server_port);
        return o;
    }

    static EventMatch endpoints(uint16_t lport, uint16_t rport) {
        return [=](const tcpstates_event& e) { return e.lport == lport && e.rport == rport; };
    }
    EventMatch client(size_t i) const { return endpoints(client_ports[i], server_port); }
    EventMatch accepted(size_t i) const { return endpoints(server_port, client_ports[i]); }

    // The lives that have not ended yet, one line each with what was received of them.
    std::string unfinished(const std::vector<tcpstates_event>& received) const {
        const auto events = chronological(received);
        std::string report;
        const auto check = [&](const std::string& name, const EventMatch& socket) {
            const auto life = life_of(events, socket);
            if (ended(life)) return;
            report += name + ":";
            for (const auto& t : transitions(life)) report += " " + t;
            report += "\n";
        };
        check("listener", endpoints(server_port, 0));
        for (size_t i = 0; i < client_ports.size(); ++i) {
            check("client " + std::to_string(client_ports[i]), client(i));
            check("accepted " + std::to_string(client_ports[i]), accepted(i));
        }
        return report;
    }

    // Every client's and accepted socket's whole life was reported.
    void check_lives(const std::vector<tcpstates_event>& events) const {
        for (size_t i = 0; i < client_ports.size(); ++i) {
            INFO("connection " << i << ", client port " << client_ports[i]);
            CHECK(transitions(life_of(events, client(i))) == kClientLife);
            CHECK(transitions(life_of(events, accepted(i))) == kServerLife);
        }
    }

    size_t socket_count() const { return 1 + 2 * client_ports.size(); }

    Fd listener;
    uint16_t server_port = 0;
    std::vector<Fd> clients;
    std::vector<uint16_t> client_ports;
};

// No duration from a wrong start: every known duration is exactly the time since the same
// socket's previous transition, which the test must have received, in the life that began
// after that address's last CLOSE. Returns how many transitions had an unknown start.
size_t check_known_durations(const std::vector<tcpstates_event>& received) {
    std::map<uint64_t, tcpstates_event> previous;
    size_t unknown_starts = 0;
    for (const auto& e : chronological(received)) {
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
    return unknown_starts;
}

size_t table_entries(const tcpstatesd::BpfProgram& program) {
    return program.for_each_socket([](const tcpstates_socket&) {});
}

}  // namespace

TEST_CASE("a socket reusing a closed socket's address starts a life of its own",
          "[socket-table]") {
    REQUIRE_BPF();
    // Clients made one after the other, each created after the previous one was freed, so
    // that the kernel hands them the same few addresses. A remote-port filter selects them
    // (their first event has no local port yet) and keeps other traffic out.
    constexpr size_t kConnections = 50;
    Fd listener = listen_on_loopback(AF_INET);
    const uint16_t server_port = local_port(listener);
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;
    options.filters.remote_ports = {server_port};
    Tracer tracer(options);

    std::vector<EventMatch> clients;
    for (size_t i = 0; i < kConnections; ++i)
        clients.push_back(BoundSockets::endpoints(run_connection(AF_INET, listener), server_port));
    listener.reset();
    const auto all_ended = [&] {
        for (const auto& client : clients)
            if (!ended(life_of(tracer.events(), client))) return false;
        return true;
    };
    REQUIRE(tracer.wait_until(all_ended));
    REQUIRE(tracer.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);

    std::map<uint64_t, int> lives_per_address;
    for (const auto& client : clients) {
        const auto life = life_of(tracer.events(), client);
        CHECK(transitions(life) == kClientLife);
        ++lives_per_address[life.front().skaddr];
    }
    // One unknown start per socket, its first transition, whatever had the address before.
    const size_t unknown_starts = check_known_durations(tracer.events());
    CHECK(unknown_starts == kConnections);
    INFO("the kernel reused no socket address: nothing was tested");
    CHECK(lives_per_address.size() < kConnections);
}

TEST_CASE("a socket table smaller than the open sockets evicts but never reports a wrong start",
          "[socket-table]") {
    REQUIRE_BPF();
    constexpr uint32_t kTableSize = 16;
    constexpr size_t kConnections = 64;  // 129 sockets open at once: client, accepted, listener
    // The second round's sockets mostly reuse the addresses of the first round's.
    constexpr size_t kRounds = 2;
    BoundSockets sockets(kRounds * kConnections);
    Tracer tracer(sockets.options(kTableSize));
    REQUIRE(tracer.program.socket_table_capacity() == kTableSize);

    start_listening(sockets.listener);
    for (size_t round = 0; round < kRounds; ++round) {
        std::vector<Fd> servers;
        for (size_t i = round * kConnections; i < (round + 1) * kConnections; ++i) {
            REQUIRE(try_connect(sockets.clients[i], AF_INET, sockets.server_port) == 0);
            servers.push_back(accept_one(sockets.listener));
            tracer.source.consume();
        }
        // All open: the table is as full as it gets, and never fuller than its size.
        const size_t open_entries = table_entries(tracer.program);
        CHECK(open_entries > 0);
        CHECK(open_entries <= kTableSize);
        for (size_t i = 0; i < kConnections; ++i) {
            sockets.clients[round * kConnections + i].reset();
            expect_eof(servers[i]);
            servers[i].reset();
            tracer.source.consume();
        }
    }
    sockets.listener.reset();

    const bool all_ended =
        tracer.wait_until([&] { return sockets.unfinished(tracer.events()).empty(); });
    INFO("not ended:\n" << sockets.unfinished(tracer.events()));
    REQUIRE(all_ended);
    // Every transition of every socket arrived: what follows relies on having them all.
    REQUIRE(tracer.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);

    sockets.check_lives(tracer.events());  // evictions notwithstanding
    const size_t unknown_starts = check_known_durations(tracer.events());

    // Evicted: inserted, neither deleted on CLOSE nor still in the table.
    const auto counters = tracer.program.read_counters();
    const size_t present = table_entries(tracer.program);
    INFO("inserted " << counters[TCPSTATES_COUNTER_TABLE_INSERT] << ", deleted "
                     << counters[TCPSTATES_COUNTER_TABLE_DELETE] << ", present " << present
                     << ", insert failed " << counters[TCPSTATES_COUNTER_TABLE_INSERT_FAILED]);
    CHECK(present <= kTableSize);
    CHECK(counters[TCPSTATES_COUNTER_TABLE_INSERT] >
          counters[TCPSTATES_COUNTER_TABLE_DELETE] + present);
    // Without evictions, each socket's first event would be its only unknown start.
    CHECK(unknown_starts > sockets.socket_count());
}

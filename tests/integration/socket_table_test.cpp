// Per-socket records: a destroyed socket's record goes (its address is soon reused), or, where a
// walk sweeps (the daemon's programs), waits for the next socket at its address, the walks
// deleting the others; the table keeps every open socket; when full (with the kernel's BTF, or
// preallocated for the raw tracepoint of kernels without BTF) it keeps reporting every
// transition and never computes a duration from a wrong start.
//
// Each test's programs watch only its server's port, so that other processes' traffic
// stays out of the buffers: as the remote port for the clients (whose first event has no
// local port yet), as the local port for the listener and the accepted sockets. The state
// is still kept for every socket on the system: it is stored before the port filters run.
#include <bpf/bpf.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <memory>

#include "event_collector.hpp"
#include "kernel/bpf_maps.hpp"
#include "kernel/socket_walk.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

// Which programs keep the records: the BTF raw tracepoint's, or the plain raw tracepoint's of
// kernels without BTF (given the kernel's own BTF as the BTF file), with a preallocated table.
enum class Attach { Btf, Raw };

tcpstatesd::BpfOptions watching(std::vector<uint16_t> tcpstatesd::EventFilters::*ports,
                                uint16_t port, uint32_t socket_table_size = 0,
                                Attach attach = Attach::Btf) {
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;
    if (socket_table_size != 0) options.socket_table_size = socket_table_size;
    if (attach == Attach::Raw) options.btf_path = "/sys/kernel/btf/vmlinux";
    options.filters.*ports = {port};
    // A retransmission answers an ACK later than the timeout (a starved machine: a kernel
    // matrix guest beside the parallel suite); it is no transition, so not traced here.
    options.retransmits = false;
    return options;
}

EventMatch endpoints(uint16_t lport, uint16_t rport) {
    return [=](const tcpstates_event& e) {
        return e.transition.family == AF_INET && e.transition.lport == lport &&
               e.transition.rport == rport;
    };
}

// One socket of the test: how to find it, which program reports it, what its life must be.
struct Watched {
    std::string name;
    EventMatch match;
    const Tracer* tracer;
    const std::vector<std::string>* life;

    std::vector<tcpstates_event> received() const { return life_of(tracer->events(), match); }
};

// The sockets whose lives have not ended yet, one line each with what was received of them.
std::string unfinished(const std::vector<Watched>& sockets) {
    std::string report;
    for (const auto& socket : sockets) {
        const auto life = socket.received();
        if (ended(life)) continue;
        report += socket.name + ":";
        for (const auto& t : transitions(life)) report += " " + t;
        report += "\n";
    }
    return report;
}

// Consumes from every tracer until every watched life has ended or the time is up. (It
// polls the first tracer's fd only, in the short slices wait_until() uses.)
bool wait_for_ends(const std::vector<Tracer*>& tracers, const std::vector<Watched>& sockets) {
    return tracers.front()->wait_until([&] {
        for (Tracer* tracer : tracers) tracer->source.consume();
        return unfinished(sockets).empty();
    });
}

// No duration from a wrong start, in one socket's life as received: its first transition has
// an unknown start (whatever had the address before was another socket), and every known
// duration is exactly the time since the life's previous transition. Returns how many
// transitions had an unknown start.
size_t check_durations(const std::vector<tcpstates_event>& life) {
    size_t unknown_starts = 0;
    for (size_t i = 0; i < life.size(); ++i) {
        INFO("event " << i << ": " << describe(life[i]));
        if (life[i].transition.flags & TCPSTATES_EVENT_START_UNKNOWN) {
            ++unknown_starts;
            CHECK(life[i].transition.duration_ns == 0);
        } else {
            CHECK(i > 0);
            if (i > 0) CHECK(life[i].transition.duration_ns == life[i].ts_ns - life[i - 1].ts_ns);
        }
    }
    return unknown_starts;
}

}  // namespace

TEST_CASE("a socket reusing a closed socket's address starts a life of its own", "[socket-table]") {
    REQUIRE_BPF();
    // One after the other: each client is created after the previous one was freed, so the
    // kernel hands them the same few addresses.
    constexpr size_t kConnections = 50;
    Fd listener = bind_loopback(AF_INET);
    const uint16_t server_port = local_port(listener);
    Tracer clients(watching(&tcpstatesd::EventFilters::remote_ports, server_port));
    start_listening(listener);

    std::vector<Watched> sockets;
    for (size_t i = 0; i < kConnections; ++i) {
        const uint16_t client_port = run_connection(AF_INET, listener);
        sockets.push_back({"client " + std::to_string(client_port),
                           endpoints(client_port, server_port), &clients, &kClientLife});
    }
    listener.reset();
    const bool all_ended = wait_for_ends({&clients}, sockets);
    INFO("not ended:\n" << unfinished(sockets));
    REQUIRE(all_ended);
    REQUIRE(clients.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);

    std::map<uint64_t, int> lives_per_address;
    size_t unknown_starts = 0;
    for (const auto& socket : sockets) {
        INFO(socket.name);
        const auto life = socket.received();
        CHECK(transitions(life) == kClientLife);
        unknown_starts += check_durations(life);
        ++lives_per_address[life.front().skaddr];
    }
    // With room for every socket: no unknown start but each socket's first transition.
    CHECK(unknown_starts == kConnections);
    INFO("the kernel reused no socket address: nothing was tested");
    CHECK(lives_per_address.size() < kConnections);
}

// Connections in rounds, all of a round open at once, then all closed, watched by two sets of
// programs (each keeping a record of every socket on the system).
struct OpenAtOnce {
    static constexpr size_t kConnections = 64;  // 129 sockets open at once, with the listener
    // The second round's sockets mostly reuse the addresses of the first round's.
    static constexpr size_t kRounds = 2;

    OpenAtOnce(uint32_t table_size, Attach attach, Fd bound)
        : listener(std::move(bound)),
          server_port(local_port(listener)),
          servers(
              watching(&tcpstatesd::EventFilters::local_ports, server_port, table_size, attach)),
          clients(
              watching(&tcpstatesd::EventFilters::remote_ports, server_port, table_size, attach)) {}

    // Returns whether every watched life ended (was reported through its CLOSE) in time.
    bool run() {
        const auto consume = [&] {
            for (Tracer* tracer : tracers()) tracer->source.consume();
        };
        start_listening(listener);
        sockets.push_back({"listener", endpoints(server_port, 0), &servers, &kListenerLife});
        for (size_t round = 0; round < kRounds; ++round) {
            std::vector<std::pair<Fd, Fd>> open;
            for (size_t i = 0; i < kConnections; ++i) {
                Fd client = connect_loopback(AF_INET, server_port);
                const uint16_t client_port = local_port(client);
                open.emplace_back(std::move(client), accept_one(listener));
                sockets.push_back({"client " + std::to_string(client_port),
                                   endpoints(client_port, server_port), &clients, &kClientLife});
                sockets.push_back({"accepted " + std::to_string(client_port),
                                   endpoints(server_port, client_port), &servers, &kServerLife});
                consume();
            }
            for (auto& [client, server] : open) {
                client.reset();
                expect_eof(server);
                server.reset();
                consume();
            }
        }
        listener.reset();
        return wait_for_ends(tracers(), sockets);
    }

    std::vector<Tracer*> tracers() { return {&servers, &clients}; }
    std::vector<const Tracer*> tracers() const { return {&servers, &clients}; }
    uint64_t state_failures() const {
        return servers.program.read_counters()[TCPSTATES_COUNTER_STATE_FAILED] +
               clients.program.read_counters()[TCPSTATES_COUNTER_STATE_FAILED];
    }

    Fd listener;
    uint16_t server_port;
    Tracer servers;
    Tracer clients;
    std::vector<Watched> sockets;
};

std::unique_ptr<OpenAtOnce> run_open_at_once(uint32_t table_size, Attach attach) {
    auto run = std::make_unique<OpenAtOnce>(table_size, attach, bind_loopback(AF_INET));
    const bool ended = run->run();
    uint64_t losses = 0;
    for (const Tracer* tracer : run->tracers()) losses += tracer->program.recursion_losses();
    INFO("not ended:\n" << unfinished(run->sockets) << "recursion losses: " << losses);
    REQUIRE(ended);
    return run;
}

// Every socket's life, every duration exactly the time since the life's previous transition;
// returns how many transitions had an unknown start.
size_t check_lives(const OpenAtOnce& run) {
    // Every transition of every socket arrived: what follows relies on having them all.
    for (const Tracer* tracer : run.tracers())
        REQUIRE(tracer->program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);
    size_t unknown_starts = 0;
    for (const auto& socket : run.sockets) {
        INFO(socket.name);
        const auto life = socket.received();
        CHECK(transitions(life) == *socket.life);
        unknown_starts += check_durations(life);
    }
    return unknown_starts;
}

TEST_CASE(
    "the socket table keeps a record of every open socket: only first transitions start unknown",
    "[socket-table]") {
    REQUIRE_BPF();
    const auto run = run_open_at_once(0, Attach::Btf);
    CHECK(check_lives(*run) == run->sockets.size());
    CHECK(run->state_failures() == 0);
}

TEST_CASE("a full socket table refuses sockets but never reports a wrong start", "[socket-table]") {
    REQUIRE_BPF();
    constexpr uint32_t kTableSize = 16;
    for (Attach attach : {Attach::Btf, Attach::Raw}) {
        INFO((attach == Attach::Btf ? "tp_btf, allocated as used" : "raw_tp, preallocated"));
        const auto run = run_open_at_once(kTableSize, attach);
        // Without a full table, each socket's first transition would be its only unknown start.
        CHECK(check_lives(*run) > run->sockets.size());
        CHECK(run->state_failures() > 0);
        for (const Tracer* tracer : run->tracers()) {
            CHECK(tracer->program.socket_table_capacity() == kTableSize);
            CHECK(tracer->program.preallocated() == (attach == Attach::Raw));
        }
    }
}

namespace {

// The destroyed sockets' entries the last walk listed for the next one to delete, as they are
// now (those a new socket took over since are left out).
std::map<uint64_t, tcpstates_socket> listed_destroyed(const tcpstatesd::BpfProgram& program) {
    std::map<uint64_t, tcpstates_socket> listed;
    tcpstatesd::for_each_entry(
        program.destroyed_records_fd(), "destroyed_records", sizeof(uint64_t), sizeof(uint8_t),
        [&](const void* key, const void*) {
            uint64_t address = 0;
            std::memcpy(&address, key, sizeof address);
            tcpstates_socket entry{};
            if (bpf_map_lookup_elem(program.socket_records_fd(), &address, &entry) == 0 &&
                entry.net == TCPSTATES_NET_DESTROYED)
                listed.emplace(address, entry);
        });
    return listed;
}

}  // namespace

TEST_CASE(
    "where a walk sweeps, a destroyed socket's record waits for the next socket at its address, "
    "and the walk after the one that lists it deletes it, listing or not",
    "[socket-table][walk]") {
    REQUIRE_BPF();
    tcpstatesd::BpfOptions options;
    options.event_details = false;  // the daemon's programs, which count in the maps
    tcpstatesd::BpfProgram program(options);
    REQUIRE(program.can_walk_sockets());

    // Made one after the other, each socket mostly takes over the entry of one destroyed
    // before it: none of them may be refused a record or lose its start.
    constexpr size_t kSequential = 50;
    Fd listener = listen_on_loopback(AF_INET);
    for (size_t i = 0; i < kSequential; ++i) run_connection(AF_INET, listener);
    // Open at once, then closed: their sockets' entries are mostly at addresses no socket
    // has taken since. Other tests' churn frees as many sockets as it makes, and the kernel
    // hands a new socket the address freed last, so it takes few of these.
    constexpr size_t kAtOnce = 200;
    {
        std::vector<std::pair<Fd, Fd>> open;
        for (size_t i = 0; i < kAtOnce; ++i) {
            Fd client = connect_loopback(AF_INET, local_port(listener));
            open.emplace_back(std::move(client), accept_one(listener));
        }
        for (auto& [client, server] : open) {
            client.reset();
            expect_eof(server);
            server.reset();
        }
    }
    listener.reset();
    const uint64_t refused = program.read_counters()[TCPSTATES_COUNTER_STATE_FAILED];
    CHECK(refused == 0);
    CHECK(program.read_counters()[TCPSTATES_COUNTER_STATE_MISMATCH] == 0);

    const tcpstatesd::SocketWalk listing =
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
    const std::map<uint64_t, tcpstates_socket> listed = listed_destroyed(program);
    INFO("destroyed sockets' entries after the first walk: "
         << listing.listing->destroyed_records << ", listed and not taken over: " << listed.size());
    // Of the 2 x kAtOnce sockets closed above, at least half still wait (above): enough that a
    // sweep that deletes nothing is seen.
    REQUIRE(listing.listing->destroyed_records >= listed.size());
    REQUIRE(listed.size() >= kAtOnce);

    // A walk that does not read the table itself (most of the daemon's) still sweeps.
    const tcpstatesd::SocketWalk sweeping =
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::skip);
    CHECK_FALSE(sweeping.listing);
    // Each listed entry is gone, or a new socket took it over (and may have been destroyed
    // again since: its since_ns is then the new life's).
    size_t left = 0;
    for (const auto& [address, before] : listed) {
        tcpstates_socket now{};
        if (bpf_map_lookup_elem(program.socket_records_fd(), &address, &now) == 0 &&
            tcpstates_record_destroyed(&now) && now.since_ns == before.since_ns)
            ++left;
    }
    CHECK(left == 0);
    // It deletes what was listed, nothing else.
    CHECK(sweeping.totals.deleted > 0);
    CHECK(sweeping.totals.deleted <= listing.listing->destroyed_records);
    // And leaves no list behind for the next walk to sweep again.
    uint64_t still_listed = 0;
    CHECK(bpf_map_get_next_key(program.destroyed_records_fd(), nullptr, &still_listed) != 0);
}

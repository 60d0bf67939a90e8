// The two kernel-to-user transports: that they carry the same events, and that a buffer too
// small for a burst accounts for every event it could not carry.
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <stdexcept>
#include <system_error>

#include "event_collector.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;
using tcpstatesd::LossReason;
using tcpstatesd::Transport;

namespace {

// Transitions of one accepted socket whose client closes first, and of one listener.
constexpr uint64_t kEventsPerConnection = 5;
constexpr uint64_t kEventsPerListener = 2;

std::vector<std::string> descriptions(const std::vector<tcpstates_event>& events) {
    std::vector<std::string> lines;
    for (const auto& e : events) lines.push_back(describe(e));
    return lines;
}

// Runs `work` once pinned to each CPU this thread may run on, then restores the thread's
// affinity. Returns how many CPUs that was.
int on_every_cpu(const std::function<void()>& work) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
    struct Restore {
        const cpu_set_t& set;
        ~Restore() { sched_setaffinity(0, sizeof set, &set); }
    } restore{allowed};
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0)
            throw std::system_error(errno, std::generic_category(), "sched_setaffinity");
        work();
        ++cpus;
    }
    return cpus;
}

}  // namespace

TEST_CASE("the ring buffer and the perf buffer deliver the same events", "[transport]") {
    REQUIRE_BPF();
    // Every socket of the scenario is bound before the programs load, so that one local-port
    // allow-list names them all and keeps other processes' traffic out.
    struct Connection {
        int family;
        Fd listener, client;
        uint16_t server_port, client_port;
    };
    std::vector<Connection> connections;
    tcpstatesd::BpfOptions options;
    for (int family : {AF_INET, AF_INET6}) {
        Connection c{family, bind_loopback(family), bind_loopback(family), 0, 0};
        c.server_port = local_port(c.listener);
        c.client_port = local_port(c.client);
        options.filters.local_ports.push_back(c.server_port);
        options.filters.local_ports.push_back(c.client_port);
        connections.push_back(std::move(c));
    }
    options.transport = Transport::RingBuffer;
    Tracer ring(options);
    options.transport = Transport::PerfBuffer;
    Tracer perf(options);
    REQUIRE(ring.program.transport() == Transport::RingBuffer);
    REQUIRE(perf.program.transport() == Transport::PerfBuffer);

    for (auto& c : connections) {
        start_listening(c.listener);
        run_connection(c.family, c.listener, std::move(c.client));
        c.listener.reset();
    }

    // Each socket of the scenario, with the transitions it must have.
    std::vector<std::pair<EventMatch, std::vector<std::string>>> sockets;
    for (const auto& c : connections) {
        const int family = c.family;
        const auto match = [family](uint16_t lport, uint16_t rport) -> EventMatch {
            return [=](const tcpstates_event& e) {
                return e.transition.family == family && e.transition.lport == lport &&
                       e.transition.rport == rport;
            };
        };
        sockets.emplace_back(match(c.server_port, 0), kListenerLife);
        sockets.emplace_back(match(c.server_port, c.client_port), kServerLife);
        sockets.emplace_back(match(c.client_port, c.server_port), kClientLife);
    }
    const auto all_ended = [&](const Tracer& tracer) {
        for (const auto& [socket, expected] : sockets)
            if (!ended(life_of(tracer.events(), socket))) return false;
        return true;
    };
    REQUIRE(ring.wait_until([&] { return all_ended(ring); }));
    REQUIRE(perf.wait_until([&] { return all_ended(perf); }));

    for (const auto& [socket, expected] : sockets) {
        const auto from_ring = life_of(ring.events(), socket);
        const auto from_perf = life_of(perf.events(), socket);
        CHECK(transitions(from_ring) == expected);
        CHECK(descriptions(from_ring) == descriptions(from_perf));
    }
    CHECK(ring.source.losses().total() == 0);
    CHECK(perf.source.losses().total() == 0);
}

TEST_CASE("a burst into a tiny buffer counts every event it cannot deliver", "[transport][loss]") {
    REQUIRE_BPF();
    const auto transport = GENERATE(Transport::RingBuffer, Transport::PerfBuffer);
    INFO(tcpstatesd::transport_name(transport));
    constexpr int kBurst = 300;

    Fd listener = bind_loopback(AF_INET);
    const uint16_t port = local_port(listener);
    tcpstatesd::BpfOptions options;
    options.transport = transport;
    options.ring_buffer_bytes = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));  // the minimum
    options.perf_buffer_pages = 1;                                             // per CPU
    // Only the listener and its accepted sockets: an exact number of events to account for.
    options.filters.local_ports = {port};
    Tracer tracer(options);
    start_listening(listener);

    for (int i = 0; i < kBurst; ++i) run_connection(AF_INET, listener);  // nothing consumed
    tracer.drain();
    // A perf buffer reports losses in a record written ahead of the next sample that fits in
    // that CPU's buffer: one more connection on every CPU, after draining, brings them all in.
    const int flushes = on_every_cpu([&] { run_connection(AF_INET, listener); });
    listener.reset();

    const uint64_t expected = kEventsPerConnection * (kBurst + flushes) + kEventsPerListener;
    const auto lost = [&] {
        return tracer.lost(transport == Transport::RingBuffer ? LossReason::RingBufferFull
                                                              : LossReason::PerfBufferFull);
    };
    const auto accounted = [&] { return tracer.events().size() + lost(); };
    INFO("expected " << expected << " events");
    REQUIRE(tracer.wait_until([&] { return accounted() >= expected; }));
    tracer.source.consume();
    CHECK(accounted() == expected);
    CHECK(lost() > 0);
    CHECK(tracer.events().size() > 0);
    for (const auto& e : tracer.events()) {
        INFO(describe(e));
        CHECK(e.transition.lport == port);
    }
    // Every loss has the reason of this transport's full buffer (the kernel's recursion guard
    // may also skip a run under foreign load; it is not what this test provokes).
    const auto losses = tracer.source.losses();
    CHECK(losses.total() - losses[LossReason::Recursion] == lost());
}

TEST_CASE("an exception thrown by the sink comes out of consume(), and no other event is lost",
          "[transport]") {
    REQUIRE_BPF();
    const auto transport = GENERATE(Transport::RingBuffer, Transport::PerfBuffer);
    INFO(tcpstatesd::transport_name(transport));

    // Throws on the first event, then keeps everything: no event may be lost by the throw
    // beyond the one it refused.
    struct FailingOnce : tcpstatesd::EventSink {
        void on_event(const tcpstates_event& event) override {
            if (!failed) {
                failed = true;
                throw std::runtime_error("sink broke");
            }
            events.push_back(event);
        }
        bool failed = false;
        std::vector<tcpstates_event> events;
    } sink;

    Fd listener = bind_loopback(AF_INET);
    tcpstatesd::BpfOptions options;
    options.transport = transport;
    options.filters.local_ports = {local_port(listener)};
    tcpstatesd::BpfProgram program(options);
    tcpstatesd::EventSource source(program, sink);
    start_listening(listener);
    for (int i = 0; i < 3; ++i) run_connection(AF_INET, listener);
    listener.reset();

    // 1 (CLOSE->LISTEN) + 3 x 5 (accepted sockets) + 1 (LISTEN->CLOSE).
    constexpr size_t kExpected = 17;
    bool threw = false;
    const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
    while (sink.events.size() < kExpected - 1 && std::chrono::steady_clock::now() < deadline) {
        try {
            source.consume();
        } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()) == "sink broke");
            CHECK_FALSE(threw);
            threw = true;
        }
        pollfd pfd{source.fd(), POLLIN, 0};
        poll(&pfd, 1, 50);
    }
    CHECK(threw);
    CHECK(sink.events.size() == kExpected - 1);
    CHECK(source.losses().total() - source.losses()[LossReason::Recursion] == 0);
}

TEST_CASE("an event source refuses a sink of the other kind", "[transport]") {
    REQUIRE_BPF();
    tcpstatesd::BpfOptions options;
    options.event_details = false;  // counts in the maps
    tcpstatesd::BpfProgram program(options);
    EventCollector full_events;
    CHECK_THROWS_WITH(tcpstatesd::EventSource(program, full_events),
                      Catch::Contains("read them with a TupleSink"));
}

// The kernel-side filters, observed on real connections: what an allow-list or a family
// filter lets through, and a change of filters on a program that stays attached.
//
// Every scenario runs the connections that must be filtered out first and the ones that
// must be seen last: the ring buffer keeps the order in which events were written, so once
// the last expected event has arrived, the events of the filtered-out connections would
// have arrived too (but for a packet processed late, which can only hide a leak from a
// check, never fail one).
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <utility>

#include "event_collector.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

EventMatch endpoints(int family, uint16_t lport, uint16_t rport) {
    return [=](const tcpstates_event& e) {
        return e.transition.family == family && e.transition.lport == lport &&
               e.transition.rport == rport;
    };
}

// The events received from `first` on.
std::vector<tcpstates_event> since(const Tracer& tracer, size_t first) {
    return {tracer.events().begin() + static_cast<std::ptrdiff_t>(first), tracer.events().end()};
}

tcpstatesd::EventFilters local_ports_only(uint16_t port) {
    tcpstatesd::EventFilters filters;
    filters.local_ports = {port};
    return filters;
}

tcpstatesd::EventFilters remote_ports_only(uint16_t port) {
    tcpstatesd::EventFilters filters;
    filters.remote_ports = {port};
    return filters;
}

tcpstatesd::EventFilters family_only(int family) {
    tcpstatesd::EventFilters filters;
    filters.family = family;
    return filters;
}

tcpstatesd::BpfOptions with_filters(const tcpstatesd::EventFilters& filters) {
    tcpstatesd::BpfOptions options;
    options.transport = tcpstatesd::Transport::RingBuffer;  // ordered: see the top of the file
    options.filters = filters;
    // Room for other processes' traffic while a test looks away, where the filters let it in.
    options.ring_buffer_bytes = 32u << 20;
    // A retransmission answers an ACK later than the timeout (a starved machine: a kernel
    // matrix guest beside the parallel suite); it is no transition, so not traced here.
    options.retransmits = false;
    return options;
}

// Two IPv4 servers made by `open` (bound, or listening): the one a filter lets through and the
// other.
struct ServerPair {
    Fd wanted;
    Fd other;
    uint16_t wanted_port;
    uint16_t other_port;
};

ServerPair server_pair(Fd (*open)(int family)) {
    Fd wanted = open(AF_INET);
    Fd other = open(AF_INET);
    const uint16_t wanted_port = local_port(wanted);
    const uint16_t other_port = local_port(other);
    return {std::move(wanted), std::move(other), wanted_port, other_port};
}

// The listener on `port` and its child accepted from `client_port` were reported, each its
// whole life.
void check_server_side_reported(Tracer& tracer, int family, uint16_t port, uint16_t client_port) {
    const auto listener = endpoints(family, port, 0);
    const auto child = endpoints(family, port, client_port);
    REQUIRE(tracer.wait_until([&] {
        return ended(life_of(tracer.events(), listener)) && ended(life_of(tracer.events(), child));
    }));
    CHECK(transitions(life_of(tracer.events(), listener)) == kListenerLife);
    CHECK(transitions(life_of(tracer.events(), child)) == kServerLife);
}

// Every event received passes `only` (each one that does not is described).
template <typename Only>
void check_every_event(const std::vector<tcpstates_event>& events, Only only) {
    for (const auto& e : events) {
        INFO(describe(e));
        CHECK(only(e.transition));
    }
}

}  // namespace

TEST_CASE("a local-port allow-list reports only sockets on that local port", "[filters]") {
    REQUIRE_BPF();
    auto [wanted, other, wanted_port, other_port] = server_pair(bind_loopback);
    INFO("other port " << other_port);
    Tracer tracer(with_filters(local_ports_only(wanted_port)));

    start_listening(other);
    start_listening(wanted);
    run_connection(AF_INET, other);
    const uint16_t client_port = run_connection(AF_INET, wanted);
    other.reset();
    wanted.reset();

    check_server_side_reported(tracer, AF_INET, wanted_port, client_port);
    // The client side of the wanted connection has an ephemeral local port: filtered out too.
    CHECK(life_of(tracer.events(), endpoints(AF_INET, client_port, wanted_port)).empty());
    check_every_event(tracer.events(), [&](const auto& t) { return t.lport == wanted_port; });
}

TEST_CASE("a remote-port allow-list reports only sockets with that remote port", "[filters]") {
    REQUIRE_BPF();
    const auto [wanted, other, wanted_port, other_port] = server_pair(listen_on_loopback);
    INFO("other port " << other_port);
    Tracer tracer(with_filters(remote_ports_only(wanted_port)));

    run_connection(AF_INET, other);
    const uint16_t client_port = run_connection(AF_INET, wanted);

    // Named by a later event: its first one has local port 0.
    const auto client = endpoints(AF_INET, client_port, wanted_port);
    REQUIRE(tracer.wait_until([&] { return ended(life_of(tracer.events(), client)); }));
    const auto life = life_of(tracer.events(), client);
    CHECK(transitions(life) == kClientLife);
    CHECK(life.front().transition.lport == 0);
    check_every_event(tracer.events(), [&](const auto& t) { return t.rport == wanted_port; });
}

TEST_CASE("a family filter reports only that address family", "[filters]") {
    REQUIRE_BPF();
    const int family = GENERATE(AF_INET, AF_INET6);
    const int other_family = family == AF_INET ? AF_INET6 : AF_INET;
    INFO("filter " << family_label(family));
    Fd wanted = bind_loopback(family);
    Fd other = bind_loopback(other_family);
    const uint16_t wanted_port = local_port(wanted);
    const uint16_t other_port = local_port(other);
    // Both ports allowed, so that only the family filter can keep the other family out; the
    // port filter keeps the rest of the system's traffic out.
    auto filters = family_only(family);
    filters.local_ports = {wanted_port, other_port};
    Tracer tracer(with_filters(filters));

    start_listening(other);
    run_connection(other_family, other);
    other.reset();
    start_listening(wanted);
    const uint16_t client_port = run_connection(family, wanted);
    wanted.reset();

    check_server_side_reported(tracer, family, wanted_port, client_port);
    check_every_event(tracer.events(),
                      [&](const auto& t) { return t.family == family && t.lport == wanted_port; });
}

TEST_CASE("apply_filters changes what a live program reports without re-attaching", "[filters]") {
    REQUIRE_BPF();
    Fd a = listen_on_loopback(AF_INET);
    Fd b = listen_on_loopback(AF_INET);
    const uint16_t port_a = local_port(a);
    const uint16_t port_b = local_port(b);
    INFO("port a " << port_a << ", port b " << port_b);
    Tracer tracer(with_filters(local_ports_only(port_a)));

    // One connection to each listener, the one to `last` last; waits until the accepted
    // socket of that connection has closed, and checks that everything received meanwhile
    // was on `last`'s port and that its accepted socket's whole life was there.
    const auto run_phase = [&](const Fd& first, const Fd& last) {
        const size_t start = tracer.events().size();
        run_connection(AF_INET, first);
        const uint16_t client_port = run_connection(AF_INET, last);
        const uint16_t port = local_port(last);
        const auto last_child = endpoints(AF_INET, port, client_port);
        REQUIRE(
            tracer.wait_until([&] { return ended(life_of(since(tracer, start), last_child)); }));
        const auto seen = since(tracer, start);
        CHECK(transitions(life_of(seen, last_child)) == kServerLife);
        check_every_event(seen, [&](const auto& t) { return t.lport == port; });
    };

    INFO("filter: port a");
    run_phase(b, a);

    tracer.program.apply_filters(local_ports_only(port_b));
    INFO("filter: port b");
    run_phase(a, b);

    // No filter: both accepted sockets and both clients (whose local ports are ephemeral),
    // among whatever else the system does meanwhile.
    tracer.program.apply_filters({});
    INFO("no filter");
    const size_t start = tracer.events().size();
    const uint16_t client_a = run_connection(AF_INET, a);
    const uint16_t client_b = run_connection(AF_INET, b);
    const std::vector<std::pair<EventMatch, std::vector<std::string>>> expected{
        {endpoints(AF_INET, port_a, client_a), kServerLife},
        {endpoints(AF_INET, client_a, port_a), kClientLife},
        {endpoints(AF_INET, port_b, client_b), kServerLife},
        {endpoints(AF_INET, client_b, port_b), kClientLife},
    };
    REQUIRE(tracer.wait_until([&] {
        const auto seen = since(tracer, start);
        for (const auto& [socket, life] : expected)
            if (!ended(life_of(seen, socket))) return false;
        return true;
    }));
    const auto seen = since(tracer, start);
    for (const auto& [socket, life] : expected) CHECK(transitions(life_of(seen, socket)) == life);
    CHECK(tracer.program.read_counters()[TCPSTATES_COUNTER_RINGBUF_FULL] == 0);
}

TEST_CASE("apply_filters replaces a full list of ports by another full one, none in common",
          "[filters]") {
    REQUIRE_BPF();
    const auto ports_from = [](uint16_t first) {
        tcpstatesd::EventFilters filters;
        for (uint16_t i = 0; i < TCPSTATES_MAX_FILTER_PORTS; ++i) {
            filters.local_ports.push_back(static_cast<uint16_t>(first + i));
            filters.remote_ports.push_back(static_cast<uint16_t>(first + i));
        }
        return filters;
    };
    Tracer tracer(with_filters(ports_from(10000)));
    // The new ports go in before the old ones go out: the maps hold both lists at once.
    CHECK_NOTHROW(tracer.program.apply_filters(ports_from(20000)));
}

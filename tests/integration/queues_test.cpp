// The queues the walk finds (bpf/queues.bpf.h), against the kernel's own counts: accept queues
// and listeners' drops per port compared with the namespace's TcpExtListenDrops, and the
// ephemeral ports in use towards one destination compared with net.ipv4.ip_local_port_range.
// Each test runs in a network namespace of its own (the walk covers the caller's), so the
// kernel's counters there are the test's alone.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "kernel/bpf_program.hpp"
#include "kernel/socket_walk.hpp"
#include "labels/labels_config.hpp"
#include "loopback.hpp"
#include "loopback_address.hpp"
#include "metrics/counted_metrics.hpp"
#include "own_network_namespace.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// The open-file limit raised to its hard limit until destroyed (the kernel's default soft limit,
// 1024 in the kernel matrix's guests, is too few for a thousand connections).
class AllOpenFiles {
public:
    AllOpenFiles() {
        if (getrlimit(RLIMIT_NOFILE, &previous_) != 0) fail("getrlimit(RLIMIT_NOFILE)");
        rlimit raised = previous_;
        raised.rlim_cur = raised.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) != 0) fail("raising RLIMIT_NOFILE");
    }
    AllOpenFiles(const AllOpenFiles&) = delete;
    AllOpenFiles& operator=(const AllOpenFiles&) = delete;
    ~AllOpenFiles() { setrlimit(RLIMIT_NOFILE, &previous_); }

private:
    rlimit previous_{};
};

// A TcpExt counter of this thread's network namespace (/proc/thread-self/net/netstat: a header
// line of names, then a line of values).
uint64_t tcp_ext(const std::string& name) {
    std::ifstream netstat("/proc/thread-self/net/netstat");
    std::string names, values;
    while (std::getline(netstat, names) && std::getline(netstat, values)) {
        if (names.rfind("TcpExt:", 0) != 0) continue;
        std::istringstream n(names), v(values);
        std::string field, value;
        while (n >> field && v >> value)
            if (field == name) return std::stoull(value);
    }
    throw std::runtime_error("no TcpExt " + name + " in /proc/thread-self/net/netstat");
}

// Polls `done` until it holds or 10 s pass (a condition on loopback sockets that takes longer
// is broken, not slow); returns whether it held.
bool wait_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// The length of a listener's accept queue as the kernel reports it (TCP_INFO's tcpi_unacked is
// sk_ack_backlog for a listener).
uint32_t accept_queue(const Fd& listener) {
    tcp_info info{};
    socklen_t size = sizeof info;
    if (getsockopt(listener.get(), IPPROTO_TCP, TCP_INFO, &info, &size) != 0)
        fail("TCP_INFO of the listener");
    return info.tcpi_unacked;
}

// A connect() started (its SYN sent), not waited for.
Fd start_connect(int family, uint16_t port) {
    Fd client(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!client) fail("socket()");
    const LoopbackAddress address(family, port);
    if (connect(client.get(), address.get(), address.length) == 0 || errno != EINPROGRESS)
        fail("a non-blocking connect()");
    return client;
}

// Walks when the reference no longer moves: TcpExtListenDrops read equal before and after the
// walk (a SYN retransmitted in between makes it try again).
struct SteadyWalk {
    tcpstatesd::SocketWalk walk;
    uint64_t listen_drops = 0;
};
SteadyWalk steady_walk(tcpstatesd::BpfProgram& program) {
    SteadyWalk steady;
    bool steady_seen = wait_until([&] {
        const uint64_t before = tcp_ext("ListenDrops");
        steady.walk =
            tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
        steady.listen_drops = tcp_ext("ListenDrops");
        return before == steady.listen_drops;
    });
    if (!steady_seen) throw std::runtime_error("TcpExtListenDrops kept moving during every walk");
    return steady;
}

tcpstatesd::BpfOptions counting() {
    tcpstatesd::BpfOptions options;
    options.event_details = false;
    // The defaults: every port listened on is a service port.
    options.labels = tcpstatesd::tuple_label_settings(tcpstatesd::LabelsConfig{});
    return options;
}

uint64_t drops_of(const tcpstatesd::SocketWalk& walk, uint8_t ipv6, uint16_t port) {
    const auto found = walk.listen_drops.find({ipv6, port});
    return found == walk.listen_drops.end() ? 0 : found->second;
}

}  // namespace

TEST_CASE(
    "a full accept queue: its length and limit per port, and drops equal to the kernel's "
    "ListenDrops, until the listener's close",
    "[queues]") {
    REQUIRE_BPF();
    const OwnNetworkNamespace netns;
    tcpstatesd::BpfProgram program(counting());
    REQUIRE(program.can_walk_sockets());
    // Any port: the namespace is the test's own.
    constexpr uint16_t kPort = 8080;
    // Clients whose SYN finds the queue full. Each SYN is dropped, and so is each one sent again
    // (1 s later, the initial RTO) until the client closes.
    constexpr int kRefusedClients = 5;

    for (const int family : {AF_INET, AF_INET6}) {
        INFO(family_label(family));
        const uint8_t ipv6 = family == AF_INET6;
        const uint64_t drops_at_start = tcp_ext("ListenDrops");
        // A walk makes the namespace known (also when it has no socket yet): a listener opened
        // from then on is followed from its listen(), not from the next walk. No walk runs
        // again until the drops are made.
        const uint64_t counted_at_start =
            drops_of(tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table),
                     ipv6, kPort);
        Fd listener = listen_on_port(family, kPort, 1);

        // The kernel's queue is full when it holds more than the backlog (sk_acceptq_is_full:
        // sk_ack_backlog > sk_max_ack_backlog): two handshakes complete, one after the other so
        // that no handshake is under way when the queue fills (an ACK that finds it full is
        // counted twice in sk_drops, docs/metrics.md).
        std::vector<Fd> accepted_clients;
        for (uint32_t queued = 1; queued <= 2; ++queued) {
            accepted_clients.push_back(connect_loopback(family, kPort));
            REQUIRE(wait_until([&] { return accept_queue(listener) == queued; }));
        }
        std::vector<Fd> refused;
        for (int i = 0; i < kRefusedClients; ++i) refused.push_back(start_connect(family, kPort));
        const bool all_dropped =
            wait_until([&] { return tcp_ext("ListenDrops") >= drops_at_start + kRefusedClients; });
        INFO("ListenDrops went from " << drops_at_start << " to " << tcp_ext("ListenDrops"));
        REQUIRE(all_dropped);
        refused.clear();  // no SYN sent again from now on

        const SteadyWalk full = steady_walk(program);
        const tcpstates_listen_queue queue = full.walk.listen_queues.at({ipv6, kPort});
        CHECK(queue.length == 2);
        CHECK(queue.limit == 1);
        CHECK(queue.length == accept_queue(listener));
        CHECK(drops_of(full.walk, ipv6, kPort) - counted_at_start ==
              full.listen_drops - drops_at_start);

        // Drops after the last walk are added at the listener's close.
        const uint64_t drops_before_close = tcp_ext("ListenDrops");
        refused.push_back(start_connect(family, kPort));
        REQUIRE(wait_until([&] { return tcp_ext("ListenDrops") > drops_before_close; }));
        refused.clear();
        listener = Fd();
        const SteadyWalk closed = steady_walk(program);
        CHECK(closed.walk.listen_queues.count({ipv6, kPort}) == 0);
        CHECK(drops_of(closed.walk, ipv6, kPort) - counted_at_start ==
              closed.listen_drops - drops_at_start);
    }
    CHECK(program.queue_walk_totals().untracked_listeners == 0);
}

TEST_CASE(
    "the ephemeral ports in use towards one destination, over the range's size, and "
    "connect() fails once the range is used up",
    "[queues]") {
    REQUIRE_BPF();
    const AllOpenFiles files;
    const OwnNetworkNamespace netns;
    // 1000 ports (the range is inclusive).
    write_sysctl("/proc/sys/net/ipv4/ip_local_port_range", "40000 40999");
    tcpstatesd::BpfProgram program(counting());
    REQUIRE(program.can_walk_sockets());
    constexpr uint16_t kPort = 5000;  // outside the range: the server's ends are not counted
    // Room for every connection in the accept queue: none is accepted, so none can move.
    const Fd listener = listen_on_port(AF_INET, kPort, 1100);

    std::vector<Fd> clients;
    for (int i = 0; i < 900; ++i) clients.push_back(connect_loopback(AF_INET, kPort));
    const tcpstatesd::SocketWalk held =
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
    CHECK(held.ephemeral_ports == 1000);
    CHECK(held.busiest_destinations.at({0, kPort}) == 900);
    CHECK(held.queue_totals.uncounted_sockets == 0);

    for (int i = 900; i < 1000; ++i) clients.push_back(connect_loopback(AF_INET, kPort));
    Fd one_more = tcp_socket(AF_INET);
    CHECK(try_connect(one_more, AF_INET, kPort) == EADDRNOTAVAIL);
    const tcpstatesd::SocketWalk used_up =
        tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
    CHECK(used_up.busiest_destinations.at({0, kPort}) == 1000);
}

TEST_CASE(
    "a port listened on only in another network namespace is a listened port for the walk, "
    "until its listener closes",
    "[queues]") {
    REQUIRE_BPF();
    tcpstatesd::BpfProgram program(counting());
    REQUIRE(program.can_walk_sockets());
    // Bound here without listening: no listener of this namespace can have the port meanwhile.
    const Fd reserved = bind_loopback(AF_INET);
    const uint16_t port = local_port(reserved);
    const auto listened = [&] {
        const tcpstatesd::SocketWalk walk =
            tcpstatesd::walk_sockets(program, tcpstatesd::SweepListing::read_record_table);
        return ((walk.totals.listening_ports[port / 64] >> (port % 64)) & 1) != 0;
    };
    REQUIRE_FALSE(listened());
    Fd listener;
    {
        const OwnNetworkNamespace netns;
        listener = listen_on_port(AF_INET, port, 8);
    }
    CHECK(listened());
    listener = Fd();
    CHECK_FALSE(listened());
}

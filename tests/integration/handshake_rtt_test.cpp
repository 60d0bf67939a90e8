// The handshake RTT histogram against the kernel: every connection a listener accepts is
// observed once, with the RTT the accepted socket reports itself (TCP_INFO's tcpi_rtt read
// right after accept(): the kernel's one sample of the handshake, which nothing changes while
// neither end sends data), in the bucket that RTT belongs to; a handshake the kernel took no
// sample of is counted, not observed. The tests' sockets are told apart from the host's other
// traffic by their service port, or by a network namespace of their own.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <prometheus/registry.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "counting.hpp"
#include "event_collector.hpp"
#include "init_context_hits.hpp"
#include "kernel/count_tables.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/tuple_labels.hpp"
#include "loopback.hpp"
#include "metrics/counted_metrics.hpp"
#include "own_network_namespace.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

// Bounds around loopback RTTs (5 to 20 microseconds on these machines), so that the
// connections spread over several buckets; +Inf takes a handshake slower than 1 ms.
const std::vector<double> kBuckets{4e-6, 6e-6, 8e-6, 1e-5, 1.5e-5, 3e-5, 1e-3};

// Handshake RTTs labelled by `port` when it is given, else unlabelled.
tcpstatesd::LabelsConfig rtt_labels(uint16_t port) {
    tcpstatesd::LabelsConfig labels;
    labels.port.families = {.handshake_rtt = port != 0};
    if (port) labels.port.ports = {port};
    return labels;
}

const tcpstatesd::HistogramBuckets kHistograms{{0.001, 1}, kBuckets, {}};

// The socket's own smoothed RTT in microseconds (tcpi_rtt).
uint32_t tcpi_rtt(const Fd& socket) {
    tcp_info info{};
    socklen_t length = sizeof info;
    if (getsockopt(socket.get(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0)
        throw std::system_error(errno, std::generic_category(), "getsockopt TCP_INFO");
    return info.tcpi_rtt;
}

// What the histogram of `port` should hold: one observation per RTT, in nanoseconds, in the
// first bucket whose bound (as the programs compare it) it does not exceed.
tcpstates_histogram expected_histogram(const std::vector<uint32_t>& rtts_us) {
    const std::vector<uint64_t> bounds = tcpstatesd::bounds_ns(kBuckets);
    tcpstates_histogram h{};
    for (uint32_t rtt_us : rtts_us) {
        const uint64_t ns = uint64_t{rtt_us} * 1000;
        size_t bucket = 0;
        while (bucket < bounds.size() && bounds[bucket] < ns) ++bucket;
        ++h.buckets[bucket];
        h.sum_ns += ns;
    }
    return h;
}

uint64_t count_of(const tcpstates_histogram& h) {
    uint64_t n = 0;
    for (uint64_t bucket : h.buckets) n += bucket;
    return n;
}

// The labelled handshake RTT histogram of `port` and family (zero if none yet).
tcpstates_histogram observed(const tcpstatesd::CountTables& tables, uint16_t port, int family) {
    tcpstates_histogram out{};
    for (const auto& h : tables.labelled_durations())
        if (h.key.kind == TCPSTATES_HISTOGRAM_HANDSHAKE_RTT && h.key.port == port &&
            h.key.ipv6 == (family == AF_INET6 ? 1 : 0))
            out = h.histogram;
    return out;
}

// The exported histogram of `port` (IPv4), if there is one.
std::optional<prometheus::ClientMetric> exported(const tcpstatesd::CountedMetrics& metrics,
                                                 uint16_t port) {
    for (const auto& family : metrics.Collect()) {
        if (family.name != "tcpstates_handshake_rtt_seconds") continue;
        for (const auto& sample : family.metric) {
            bool ours = false, ipv4 = false;
            for (const auto& label : sample.label) {
                ours = ours || (label.name == "port" && label.value == std::to_string(port));
                ipv4 = ipv4 || (label.name == "family" && label.value == "ipv4");
            }
            if (ours && ipv4) return sample;
        }
    }
    return std::nullopt;
}

// `connections` accepted on `listener` (IPv4); their tcpi_rtt.
std::vector<uint32_t> accept_connections(const Fd& listener, size_t connections) {
    std::vector<uint32_t> rtts;
    for (size_t i = 0; i < connections; ++i) {
        Fd client = connect_loopback(AF_INET, local_port(listener));
        Fd server = accept_one(listener);
        rtts.push_back(tcpi_rtt(server));
    }
    return rtts;
}

// Waits (bounded) until the exported histogram of `port` counts `count` observations.
std::optional<prometheus::ClientMetric> wait_for_count(const tcpstatesd::CountedMetrics& metrics,
                                                       uint16_t port, uint64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
    std::optional<prometheus::ClientMetric> sample = exported(metrics, port);
    while ((!sample || sample->histogram.sample_count < count) &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        sample = exported(metrics, port);
    }
    return sample;
}

// The exported sample holds exactly these RTTs with these bounds: cumulative buckets, +Inf,
// count and sum as the exposition writes them.
void check_exported(const prometheus::ClientMetric& sample, const std::vector<double>& bounds,
                    const std::vector<uint32_t>& rtts_us) {
    const std::vector<uint64_t> bounds_ns = tcpstatesd::bounds_ns(bounds);
    REQUIRE(sample.histogram.bucket.size() == bounds.size() + 1);
    uint64_t sum_ns = 0;
    for (uint32_t rtt : rtts_us) sum_ns += uint64_t{rtt} * 1000;
    for (size_t i = 0; i <= bounds.size(); ++i) {
        uint64_t below = 0;
        for (uint32_t rtt : rtts_us)
            below += i == bounds.size() || uint64_t{rtt} * 1000 <= bounds_ns[i] ? 1 : 0;
        INFO("bucket " << i);
        CHECK(sample.histogram.bucket[i].cumulative_count == below);
        if (i < bounds.size()) CHECK(sample.histogram.bucket[i].upper_bound == bounds[i]);
    }
    CHECK(sample.histogram.sample_count == rtts_us.size());
    CHECK(sample.histogram.sample_sum == static_cast<double>(sum_ns) * 1e-9);
}

// Runs `body` on a thread of its own in a network namespace of its own, and rethrows what it
// threw. Only the thread moves: the rest of the test process stays put.
void in_new_network_namespace(const std::function<void()>& body) {
    std::exception_ptr failure;
    std::thread thread([&] {
        try {
            const OwnNetworkNamespace netns;
            body();
        } catch (...) {
            failure = std::current_exception();
        }
    });
    thread.join();
    if (failure) std::rethrow_exception(failure);
}

// Runs a shell command (in the calling thread's network namespace: a child process inherits
// it); throws if it fails.
void run_command(const std::string& command) {
    if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

}  // namespace

TEST_CASE("each accepted connection's handshake RTT is observed as the tcpi_rtt its socket reports",
          "[handshake_rtt]") {
    REQUIRE_BPF();
    constexpr size_t kConnections = 40;
    for (int family : {AF_INET, AF_INET6}) {
        INFO(family_label(family));
        Fd listener = bind_loopback(family);
        const uint16_t port = local_port(listener);
        Counting counting(rtt_labels(port), kHistograms);
        start_listening(listener);

        std::vector<uint32_t> rtts;
        for (size_t i = 0; i < kConnections; ++i) {
            Fd client = connect_loopback(family, port);
            Fd server = accept_one(listener);
            rtts.push_back(tcpi_rtt(server));
        }
        const tcpstates_histogram expected = expected_histogram(rtts);
        // The observation is made at SYN_RECV -> ESTABLISHED, which TCP_INFO waited for (it
        // takes the socket's lock, held by the handshake's last step): bounded for safety.
        const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
        while (count_of(observed(counting.tables, port, family)) < kConnections &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        const tcpstates_histogram got = observed(counting.tables, port, family);
        CHECK(count_of(got) == kConnections);
        CHECK(got.sum_ns == expected.sum_ns);
        for (size_t i = 0; i <= kBuckets.size(); ++i) {
            INFO("bucket " << i);
            CHECK(got.buckets[i] == expected.buckets[i]);
        }
    }
}

TEST_CASE(
    "a handshake the kernel took no RTT sample of (a SYN cookie without timestamps) is "
    "counted, not observed",
    "[handshake_rtt][timestamps_off]") {
    REQUIRE_BPF();
    constexpr size_t kConnections = 10;
    Counting counting(rtt_labels(0), kHistograms);
    const tcpstatesd::PerFamily before = counting.tables.handshake_rtt_unmeasured();
    std::vector<uint32_t> rtts;
    in_new_network_namespace([&] {
        // Every SYN answered with a cookie, and no timestamps: the kernel has no SYN-ACK send
        // time (a cookie keeps no request) and no echoed timestamp to measure from.
        write_sysctl("/proc/sys/net/ipv4/tcp_syncookies", "2");
        write_sysctl("/proc/sys/net/ipv4/tcp_timestamps", "0");
        Fd listener = listen_on_loopback(AF_INET);
        for (size_t i = 0; i < kConnections; ++i) {
            Fd client = connect_loopback(AF_INET, local_port(listener));
            Fd server = accept_one(listener);
            rtts.push_back(tcpi_rtt(server));
        }
    });
    // The cause: the accepted sockets have no RTT either.
    CHECK(rtts == std::vector<uint32_t>(kConnections, 0));
    // Only the [timestamps_off] tests turn TCP timestamps off, which an unmeasured handshake
    // needs, and they take turns (tests/CMakeLists.txt): the increase is this namespace's
    // connections.
    const tcpstatesd::PerFamily after = counting.tables.handshake_rtt_unmeasured();
    CHECK(after[0] - before[0] == kConnections);
}

TEST_CASE(
    "the handshake RTT histogram is exported under the listener's port, and new buckets on a "
    "reload start it over with them",
    "[handshake_rtt]") {
    REQUIRE_BPF();
    constexpr size_t kConnections = 10;
    Fd listener = bind_loopback(AF_INET);
    const uint16_t port = local_port(listener);
    CountingMetrics counting(rtt_labels(port), kHistograms);
    tcpstatesd::CountedMetrics& metrics = counting.metrics;
    start_listening(listener);

    const std::vector<uint32_t> first = accept_connections(listener, kConnections);
    std::optional<prometheus::ClientMetric> sample = wait_for_count(metrics, port, kConnections);
    REQUIRE(sample);
    check_exported(*sample, kBuckets, first);

    // A reload with other handshake RTT buckets: a swap, then the new generation.
    const tcpstatesd::HistogramBuckets after{{0.001, 1}, {1e-5, 1e-3}, {}};
    metrics.prepare_buckets(after);
    metrics.configure(counting.labels, after);
    CHECK_FALSE(exported(metrics, port));  // started over: no observation yet
    const std::vector<uint32_t> second = accept_connections(listener, kConnections);
    sample = wait_for_count(metrics, port, kConnections);
    REQUIRE(sample);
    check_exported(*sample, after.handshake_rtts, second);
}

// Tagged [netfilter]: it needs iptables and the kernel's netfilter modules, which the kernel
// matrix's guests (busybox and the test binaries in an initramfs, no modules) have not; the
// matrix runs every other test case (tests/CMakeLists.txt).
TEST_CASE(
    "a SYN-ACK sent again is timed by the echoed timestamp, or counted unmeasured without "
    "timestamps",
    "[handshake_rtt][netfilter][timestamps_off]") {
    REQUIRE_BPF();
    constexpr size_t kConnections = 3;
    // Our port in the main namespace (reserved), the same number in the test's namespaces.
    const Fd reserved = bind_loopback(AF_INET);
    const uint16_t port = local_port(reserved);
    Counting counting(rtt_labels(port), kHistograms);
    // Drops the client's first pure ACK of each handshake (every other pure ACK to the port:
    // the connections stay open, so the only pure ACKs are the handshakes' and, after the
    // SYN-ACK sent again 1 s later, the answer to it, which passes).
    const std::string drop_first_ack = "iptables -A INPUT -p tcp --dport " + std::to_string(port) +
                                       " --tcp-flags ALL ACK -m statistic --mode nth --every 2 "
                                       "--packet 0 -j DROP";
    // The handshakes' RTTs, and the hits no program could count among their transitions.
    const auto handshakes = [&](const char* timestamps) {
        std::vector<uint32_t> rtts;
        InitContextHits uncountable(port);
        in_new_network_namespace([&] {
            write_sysctl("/proc/sys/net/ipv4/tcp_timestamps", timestamps);
            Fd listener = listen_on_port(AF_INET, port);
            run_command(drop_first_ack);
            std::vector<Fd> open;
            for (size_t i = 0; i < kConnections; ++i) {
                open.push_back(connect_loopback(AF_INET, port));
                Fd server = accept_one(listener);
                rtts.push_back(tcpi_rtt(server));
                open.push_back(std::move(server));
            }
        });
        return std::pair{rtts, uncountable.stop()};
    };

    // With timestamps the kernel times the SYN-ACK the ACK echoes: the client echoes the first
    // one it received, so the time includes the server's 1 s wait before sending it again
    // (TCP_TIMEOUT_INIT). Observed as the accepted sockets report it.
    // A hit no program ran for (InitContextHits) may be a handshake's: each allows one fewer.
    const auto [timed, timed_uncountable] = handshakes("1");
    INFO("hits no program could count: " << timed_uncountable << " with timestamps");
    for (uint32_t rtt : timed) CHECK(rtt >= 1000000);
    tcpstates_histogram got = observed(counting.tables, port, AF_INET);
    const uint64_t observed_timed = count_of(got);
    CHECK(observed_timed <= kConnections);
    CHECK(observed_timed + timed_uncountable >= kConnections);
    if (timed_uncountable == 0) {
        const tcpstates_histogram expected = expected_histogram(timed);
        CHECK(got.sum_ns == expected.sum_ns);
        for (size_t i = 0; i <= kBuckets.size(); ++i) CHECK(got.buckets[i] == expected.buckets[i]);
    }

    // Without timestamps no RTT (Karn's rule): counted, not observed.
    const tcpstatesd::PerFamily before = counting.tables.handshake_rtt_unmeasured();
    const auto [untimed, untimed_uncountable] = handshakes("0");
    INFO("and " << untimed_uncountable << " without");
    CHECK(untimed == std::vector<uint32_t>(kConnections, 0));
    got = observed(counting.tables, port, AF_INET);
    CHECK(count_of(got) == observed_timed);  // no more than the timed ones
    // Only the [timestamps_off] tests turn TCP timestamps off, one at a time: the increase is
    // ours.
    const uint64_t unmeasured = counting.tables.handshake_rtt_unmeasured()[0] - before[0];
    CHECK(unmeasured <= kConnections);
    CHECK(unmeasured + untimed_uncountable >= kConnections);
}

// Counting in the kernel: the programs count each transition, close and duration under the
// socket's tuple, exactly, whatever user space does meanwhile; swapping the count tables loses
// no count and makes none go down. The tests' sockets are told apart from everything else the
// host does by their service port, a listed port of their own.
#include <bpf/bpf.h>
#include <prometheus/registry.h>
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "counting.hpp"
#include "event_collector.hpp"
#include "kernel/count_tables.hpp"
#include "kernel_facts.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/tuple_labels.hpp"
#include "loopback.hpp"
#include "metrics/counted_metrics.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

// Counting in the maps with the port label on for every family, `port` listed (so it is the
// service port of both ends of a connection to it) and durations labelled by it.
tcpstatesd::LabelsConfig labels_on(uint16_t port) {
    tcpstatesd::LabelsConfig labels;
    labels.port.families = {.transitions = true,
                            .state_durations = true,
                            .sockets = true,
                            .closes = true,
                            .resets = true,
                            .retransmits = true};
    labels.port.ports = {port};
    return labels;
}

const tcpstatesd::HistogramBuckets kBuckets{{0.001, 1, 60}, {0.001, 1}, {}};

// A listener bound (not yet listening) on a loopback port.
struct PortListener {
    Fd listener = bind_loopback(AF_INET);
    uint16_t port = local_port(listener);
};

// A PortListener, and the programs counting under its port (labels_on).
struct CountingOnPort : PortListener, Counting {
    CountingOnPort() : Counting(labels_on(port), kBuckets) {}
};

// A PortListener, the programs counting under its port and the metrics made from their tables.
struct MetricsOnPort : PortListener, CountingMetrics {
    MetricsOnPort() : CountingMetrics(labels_on(port), kBuckets) {}
};

// The counts of the tuples of `port` (any owner, either family) summed, from the tables.
struct PortCounts {
    std::map<std::pair<int, int>, uint64_t> transitions;          // (from, to)
    std::map<std::pair<int, int>, uint64_t> closes;               // (from, reason)
    int64_t sockets = 0;                                          // in any state
    std::map<std::pair<int, int>, uint64_t> observed;             // (from, to): durations
    std::map<std::pair<int, std::string>, uint64_t> resets_sent;  // (state, reason's name)
    std::map<int, uint64_t> resets_received;                      // by state

    uint64_t transitions_total() const {
        uint64_t n = 0;
        for (const auto& [key, count] : transitions) n += count;
        return n;
    }
};

PortCounts counts_of(const tcpstatesd::CountTables& tables, uint16_t port,
                     const tcpstatesd::ResetReasons& reasons = {}) {
    PortCounts out;
    for (const auto& tuple : tables.tuples()) {
        if (tuple.key.port != port) continue;
        for (const tcpstates_reset_reason_count& slot : tuple.counts.reset_reasons)
            if (slot.count) {
                const std::string_view name = reasons.name(static_cast<uint32_t>(slot.key));
                out.resets_sent[{static_cast<int>(slot.key >> 32),
                                 name.empty() ? "unnamed" : std::string(name)}] += slot.count;
            }
        for (int from = 0; from < TCPSTATES_STATE_SLOTS; ++from) {
            for (int to = 0; to < TCPSTATES_STATE_SLOTS; ++to)
                if (uint64_t n = tuple.counts.transitions[from][to])
                    out.transitions[{from, to}] += n;
            for (int reason = 0; reason < TCPSTATES_CLOSE_REASONS; ++reason)
                if (uint64_t n = tuple.counts.closes[from][reason]) out.closes[{from, reason}] += n;
            out.sockets += tuple.counts.sockets[from];
            // Sent resets without a slot: none expected while a tuple sees few reasons.
            if (uint64_t n = tuple.counts.resets[TCPSTATES_RESET_SENT][from])
                out.resets_sent[{from, "no slot"}] += n;
            if (uint64_t n = tuple.counts.resets[TCPSTATES_RESET_RECEIVED][from])
                out.resets_received[from] += n;
        }
    }
    for (const auto& h : tables.labelled_durations()) {
        if (h.key.port != port) continue;
        uint64_t n = 0;
        for (uint64_t bucket : h.histogram.buckets) n += bucket;
        out.observed[{h.key.from, h.key.to}] += n;
    }
    return out;
}

// Every transition of `connections` connections made by run_connection() (the client closes
// first) and of their listener, opened and closed.
std::map<std::pair<int, int>, uint64_t> connection_transitions(uint64_t connections) {
    std::map<std::pair<int, int>, uint64_t> expected;
    for (auto [from, to] : {std::pair{TCPSTATES_CLOSE, TCPSTATES_SYN_SENT},
                            {TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED},
                            {TCPSTATES_LISTEN, TCPSTATES_SYN_RECV},
                            {TCPSTATES_SYN_RECV, TCPSTATES_ESTABLISHED},
                            {TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1},
                            {TCPSTATES_FIN_WAIT1, TCPSTATES_FIN_WAIT2},
                            {TCPSTATES_FIN_WAIT2, TCPSTATES_CLOSE},
                            {TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_WAIT},
                            {TCPSTATES_CLOSE_WAIT, TCPSTATES_LAST_ACK},
                            {TCPSTATES_LAST_ACK, TCPSTATES_CLOSE}})
        expected[{from, to}] = connections;
    expected[{TCPSTATES_CLOSE, TCPSTATES_LISTEN}] = 1;
    expected[{TCPSTATES_LISTEN, TCPSTATES_CLOSE}] = 1;
    return expected;
}

// Waits (bounded) until `port`'s transitions reach `expected` in all.
bool wait_for_total(const tcpstatesd::CountTables& tables, uint16_t port, uint64_t expected) {
    const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
    while (counts_of(tables, port).transitions_total() < expected) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

// The sum of a counter family's samples carrying port="PORT".
double sum_for_port(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
                    uint16_t port) {
    double sum = 0;
    for (const auto& family : families) {
        if (family.name != name) continue;
        for (const auto& sample : family.metric)
            for (const auto& label : sample.label)
                if (label.name == "port" && label.value == std::to_string(port))
                    sum += sample.counter.value;
    }
    return sum;
}

}  // namespace

TEST_CASE("the programs count each transition, close and duration of a connection under its port",
          "[counts]") {
    REQUIRE_BPF();
    constexpr uint64_t kConnections = 20;
    CountingOnPort on_port;
    start_listening(on_port.listener);
    for (uint64_t i = 0; i < kConnections; ++i) run_connection(AF_INET, on_port.listener);
    on_port.listener.reset();

    const auto expected = connection_transitions(kConnections);
    uint64_t total = 0;
    for (const auto& [key, n] : expected) total += n;
    INFO(
        "transitions on the port: " << counts_of(on_port.tables, on_port.port).transitions_total());
    REQUIRE(wait_for_total(on_port.tables, on_port.port, total));
    const PortCounts counted = counts_of(on_port.tables, on_port.port);
    CHECK(counted.transitions == expected);
    // Orderly closes: the client's FIN_WAIT2, the server's LAST_ACK and the listener's.
    const std::map<std::pair<int, int>, uint64_t> closes{
        {{TCPSTATES_FIN_WAIT2, TCPSTATES_CLOSE_NORMAL}, kConnections},
        {{TCPSTATES_LAST_ACK, TCPSTATES_CLOSE_NORMAL}, kConnections},
        {{TCPSTATES_LISTEN, TCPSTATES_CLOSE_NORMAL}, 1}};
    CHECK(counted.closes == closes);
    // Every socket was counted in its state and left it at CLOSE.
    CHECK(counted.sockets == 0);
    // A duration for every transition with a known start: all but each socket's first.
    std::map<std::pair<int, int>, uint64_t> observed = expected;
    for (auto first : {std::pair{TCPSTATES_CLOSE, TCPSTATES_SYN_SENT},
                       {TCPSTATES_LISTEN, TCPSTATES_SYN_RECV},
                       {TCPSTATES_CLOSE, TCPSTATES_LISTEN}})
        observed.erase(first);
    CHECK(counted.observed == observed);
    CHECK(on_port.program.read_counters()[TCPSTATES_COUNTER_STATE_MISMATCH] == 0);
}

TEST_CASE("swapping the count tables while connections churn loses no count, and none goes down",
          "[counts]") {
    REQUIRE_BPF();
    constexpr uint64_t kConnections = 400;
    constexpr int kSwaps = 20;
    MetricsOnPort on_port;
    tcpstatesd::CountedMetrics& metrics = on_port.metrics;
    start_listening(on_port.listener);

    std::atomic<bool> done{false};
    std::thread churn([&] {
        for (uint64_t i = 0; i < kConnections; ++i) run_connection(AF_INET, on_port.listener);
        on_port.listener.reset();
        done = true;
    });
    double last = 0;
    bool never_down = true;
    for (int swap = 0; swap < kSwaps || !done; ++swap) {
        metrics.swap();
        const double now =
            sum_for_port(metrics.Collect(), "tcpstates_transitions_total", on_port.port);
        never_down = never_down && now >= last;
        last = now;
    }
    churn.join();
    const auto expected = connection_transitions(kConnections);
    double total = 0;
    for (const auto& [key, n] : expected) total += static_cast<double>(n);
    const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
    double counted = 0;
    while ((counted = sum_for_port(metrics.Collect(), "tcpstates_transitions_total",
                                   on_port.port)) < total &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(counted == total);
    CHECK(never_down);
    CHECK(on_port.program.recursion_losses() == 0);
}

TEST_CASE(
    "an abort (SO_LINGER 0): the client's close aborted, its RST counted with the kernel's "
    "reason (not_specified before 6.10), the server's close reset",
    "[counts]") {
    REQUIRE_BPF();
    constexpr uint64_t kConnections = 10;
    CountingOnPort on_port;
    start_listening(on_port.listener);
    std::vector<std::string> reads;
    for (uint64_t i = 0; i < kConnections; ++i) {
        Fd client = connect_loopback(AF_INET, on_port.port);
        Fd server = accept_one(on_port.listener);
        const linger abort_at_close{1, 0};
        REQUIRE(setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &abort_at_close,
                           sizeof abort_at_close) == 0);
        client.reset();
        char byte = 0;
        reads.push_back(recv(server.get(), &byte, 1, 0) < 0 ? std::strerror(errno) : "no error");
    }
    on_port.listener.reset();
    CHECK(reads == std::vector<std::string>(kConnections, std::strerror(ECONNRESET)));

    // Each connection: CLOSE -> SYN_SENT -> ESTABLISHED -> CLOSE, LISTEN -> SYN_RECV ->
    // ESTABLISHED -> CLOSE; the listener's two.
    REQUIRE(wait_for_total(on_port.tables, on_port.port, 6 * kConnections + 2));
    const PortCounts counted =
        counts_of(on_port.tables, on_port.port, on_port.program.reset_reasons());
    const std::map<std::pair<int, int>, uint64_t> closes{
        {{TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_ABORTED}, kConnections},
        {{TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_RESET}, kConnections},
        {{TCPSTATES_LISTEN, TCPSTATES_CLOSE_NORMAL}, 1}};
    CHECK(counted.closes == closes);
    // tcp_disconnect()'s RST, after the move to CLOSE: counted in the state left.
    const std::string reason = resets_have_reasons() ? "tcp_state" : "not_specified";
    const std::map<std::pair<int, std::string>, uint64_t> sent{
        {{TCPSTATES_ESTABLISHED, reason}, kConnections}};
    CHECK(counted.resets_sent == sent);
    CHECK(counted.resets_received ==
          std::map<int, uint64_t>{{TCPSTATES_ESTABLISHED, kConnections}});
}

TEST_CASE(
    "sent resets are exported by the kernel's reason's name, unnamed and slotless ones as "
    "reason other, received ones without a reason",
    "[counts]") {
    REQUIRE_BPF();
    MetricsOnPort on_port;
    tcpstatesd::CountedMetrics& metrics = on_port.metrics;
    // The port's tuple as the programs would have counted it: a reason every kernel names (0),
    // one only kernels with reasons name (1, no_socket), one none names, and sent resets whose
    // (state, reason) found no slot.
    tcpstates_tuple_key key{};
    key.port = on_port.port;
    tcpstates_tuple_counts counts{};
    counts.reset_reasons[0] = {tcpstates_reset_reason_key(TCPSTATES_ESTABLISHED, 0), 3};
    counts.reset_reasons[1] = {tcpstates_reset_reason_key(TCPSTATES_CLOSE, 1), 2};
    counts.reset_reasons[2] = {tcpstates_reset_reason_key(TCPSTATES_ESTABLISHED, 200), 4};
    counts.resets[TCPSTATES_RESET_SENT][TCPSTATES_ESTABLISHED] = 5;
    counts.resets[TCPSTATES_RESET_RECEIVED][TCPSTATES_ESTABLISHED] = 7;
    REQUIRE(bpf_map_update_elem(on_port.program.first_tuple_table_fd(), &key, &counts,
                                BPF_NOEXIST) == 0);

    const std::string port = std::to_string(on_port.port);
    std::map<std::string, double> seen;  // "direction state reason" -> value
    for (const auto& family : metrics.Collect()) {
        if (family.name != "tcpstates_resets_total") continue;
        for (const auto& sample : family.metric) {
            std::map<std::string, std::string> labels;
            for (const auto& label : sample.label) labels[label.name] = label.value;
            if (labels["port"] != port) continue;
            seen[labels["direction"] + " " + labels["state"] +
                 (labels.contains("reason") ? " " + labels["reason"] : "")] += sample.counter.value;
        }
    }
    std::map<std::string, double> expected{{"sent ESTABLISHED not_specified", 3},
                                           {"sent ESTABLISHED other", 4 + 5},
                                           {"received ESTABLISHED", 7}};
    expected[resets_have_reasons() ? "sent CLOSE no_socket" : "sent CLOSE other"] = 2;
    CHECK(seen == expected);
}

// Exemplars against the kernel: among connections to a port of the test's own, the one it held
// open longest is the exemplar of its duration series, with its exact addresses and ports, its
// duration and when it ended; the exemplar stays until a scrape brings a newer one; switched
// off, the programs offer none. The test's series are told apart from the host's other traffic
// by the port label on the test's port.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "counting.hpp"
#include "event_collector.hpp"
#include "exposition/collection.hpp"
#include "kernel/exemplar_tables.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;
using Clock = std::chrono::steady_clock;

namespace {

const tcpstatesd::HistogramBuckets kBuckets{{0.001, 1}, {0.001}, {}};

tcpstatesd::LabelsConfig port_label(uint16_t port) {
    tcpstatesd::LabelsConfig labels;
    labels.port.families = {.state_durations = true};
    labels.port.ports = {port};
    labels.cgroup.families = {};
    return labels;
}

struct Sample {
    uint64_t count = 0;
    std::optional<tcpstatesd::Exemplar> exemplar;
};

// The client side's ESTABLISHED -> FIN_WAIT1 series of `port` (its service port) in a scrape.
std::optional<Sample> client_closes(const tcpstatesd::Collection& collection, int family,
                                    uint16_t port) {
    const std::string ipv = family == AF_INET6 ? "ipv6" : "ipv4";
    for (size_t f = 0; f < collection.families.size(); ++f) {
        if (collection.families[f].name != "tcpstates_state_duration_seconds") continue;
        const auto& metrics = collection.families[f].metric;
        for (size_t m = 0; m < metrics.size(); ++m) {
            int matched = 0;
            for (const auto& label : metrics[m].label)
                matched += (label.name == "port" && label.value == std::to_string(port)) ||
                           (label.name == "family" && label.value == ipv) ||
                           (label.name == "state" && label.value == "ESTABLISHED") ||
                           (label.name == "next_state" && label.value == "FIN_WAIT1");
            if (matched != 4) continue;
            const tcpstatesd::Exemplar* exemplar = collection.exemplar({f, m});
            return Sample{metrics[m].histogram.sample_count,
                          exemplar ? std::optional(*exemplar) : std::nullopt};
        }
    }
    return std::nullopt;
}

// A scrape once the series of `port` counts `count` observations (bounded wait), with the
// candidates the programs kept until then handed over first, as the daemon does every second.
Sample scrape_at(tcpstatesd::CountedMetrics& metrics, tcpstatesd::ExemplarTables& exemplars,
                 int family, uint16_t port, uint64_t count) {
    const auto deadline = Clock::now() + kEventTimeout;
    std::optional<Sample> sample = client_closes(metrics.collect(), family, port);
    while ((!sample || sample->count < count) && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        sample = client_closes(metrics.collect(), family, port);
    }
    INFO("observations of the test's series: " << (sample ? sample->count : 0));
    REQUIRE((sample && sample->count == count));
    // The observations are made: their candidates are in the table in use.
    metrics.add_exemplars(exemplars.take());
    sample = client_closes(metrics.collect(), family, port);
    REQUIRE(sample);
    return *sample;
}

std::string label_value(const tcpstatesd::Exemplar& exemplar, const std::string& name) {
    for (const auto& label : exemplar.labels)
        if (label.name == name) return label.value;
    return "(none)";
}

std::string endpoint_text(int family, uint16_t port) {
    return family == AF_INET6 ? "[::1]:" + std::to_string(port)
                              : "127.0.0.1:" + std::to_string(port);
}

int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

TEST_CASE("the connection held open longest is its series' exemplar, until a newer scrape",
          "[exemplars]") {
    REQUIRE_BPF();
    constexpr size_t kFast = 10;
    constexpr auto kHold = std::chrono::milliseconds(300);
    for (int family : {AF_INET, AF_INET6}) {
        INFO(family_label(family));
        Fd listener = bind_loopback(family);
        const uint16_t port = local_port(listener);
        CountingMetrics counting(port_label(port), kBuckets);
        tcpstatesd::ExemplarTables exemplars(counting.program, Counting::kExemplarTableSize);
        tcpstatesd::CountedMetrics& metrics = counting.metrics;
        metrics.set_exemplars(true);
        start_listening(listener);

        // Fast connections before and after the slow one: the slowest is neither the first
        // nor the last observation.
        for (size_t i = 0; i < kFast / 2; ++i) run_connection(family, listener);
        const auto connecting = Clock::now();
        Fd client = connect_loopback(family, port);
        const uint16_t client_port = local_port(client);
        Fd server = accept_one(listener);
        std::this_thread::sleep_for(kHold);  // what makes it the slowest
        const int64_t closing_ms = unix_ms();
        client.reset();  // ESTABLISHED -> FIN_WAIT1
        const int64_t closed_ms = unix_ms();
        const auto closed = Clock::now();
        expect_eof(server);
        server.reset();
        for (size_t i = 0; i < kFast / 2; ++i) run_connection(family, listener);

        const Sample first = scrape_at(metrics, exemplars, family, port, kFast + 1);
        REQUIRE(first.exemplar);
        const tcpstatesd::Exemplar& slowest = *first.exemplar;
        CHECK(label_value(slowest, "local") == endpoint_text(family, client_port));
        CHECK(label_value(slowest, "remote") == endpoint_text(family, port));
        CHECK(label_value(slowest, "cgroup") == "(none)");  // no family carries the label
        // Its ESTABLISHED time began within connect() and ended within close().
        CHECK(slowest.value >= std::chrono::duration<double>(kHold).count());
        CHECK(slowest.value <= std::chrono::duration<double>(closed - connecting).count());
        // Milliseconds, truncated, from the monotonic clock: within a millisecond of close().
        CHECK(slowest.timestamp_ms >= closing_ms - 1);
        CHECK(slowest.timestamp_ms <= closed_ms + 1);

        // No observation since: the same exemplar again (Prometheus stores it once).
        const Sample again = scrape_at(metrics, exemplars, family, port, kFast + 1);
        REQUIRE(again.exemplar);
        CHECK(again.exemplar->timestamp_ms == slowest.timestamp_ms);
        CHECK(label_value(*again.exemplar, "local") == endpoint_text(family, client_port));

        // A newer observation replaces it at the next scrape, slower or not.
        const uint16_t newer_port = run_connection(family, listener);
        const Sample newer = scrape_at(metrics, exemplars, family, port, kFast + 2);
        REQUIRE(newer.exemplar);
        CHECK(label_value(*newer.exemplar, "local") == endpoint_text(family, newer_port));
        CHECK(newer.exemplar->timestamp_ms >= closed_ms);

        // Switched off: the programs offer nothing, and no exemplar is shown. What they
        // offered before (the last connection's later transitions, the host's traffic) is
        // taken first: the swap waits for the programs that may have seen the switch on.
        metrics.set_exemplars(false);
        exemplars.take();
        run_connection(family, listener);
        CHECK(exemplars.take().empty());
        CHECK_FALSE(client_closes(metrics.collect(), family, port)->exemplar);
    }
}

// Native histograms against the real kernel: the programs' exponential buckets agree with their
// classic buckets observation for observation. With classic bounds at powers of two seconds,
// which are boundaries of every schema, each native bucket lies inside one classic bucket: the
// native buckets summed per classic bucket must equal the classic counts exactly, and add up to
// the count, before and after a swap of the tables.
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "counting.hpp"
#include "event_collector.hpp"
#include "kernel_facts.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;

namespace {

// 2^-17 s (7.6 us) .. 2^4 s: boundaries at every schema.
const std::vector<double> kPowersOfTwo{0x1p-17, 0x1p-14, 0x1p-10, 0x1p-7, 0x1p-3, 1, 0x1p4};

tcpstatesd::LabelsConfig durations_on(uint16_t port) {
    tcpstatesd::LabelsConfig config;
    config.port.families.state_durations = true;
    config.port.ports = {port};
    return config;
}

// A listener bound (not yet listening) on a loopback port, and the programs counting its
// durations in classic buckets at powers of two and in native buckets of schema 3.
struct NativeOnPort {
    Fd listener = bind_loopback(AF_INET);
    uint16_t port = local_port(listener);
    CountingMetrics counting{durations_on(port), {kPowersOfTwo, {0.001}, {.enabled = true}}};
    tcpstatesd::CountedMetrics& metrics = counting.metrics;
};

// The duration samples of `port` with their native buckets.
struct PortSample {
    prometheus::ClientMetric sample;
    tcpstatesd::NativeBuckets native;
};
std::vector<PortSample> port_samples(const tcpstatesd::Collection& collection, uint16_t port) {
    std::vector<PortSample> out;
    for (size_t f = 0; f < collection.families.size(); ++f) {
        const auto& family = collection.families[f];
        if (family.name != "tcpstates_state_duration_seconds") continue;
        for (size_t m = 0; m < family.metric.size(); ++m) {
            bool on_port = false;
            for (const auto& label : family.metric[m].label)
                on_port = on_port || (label.name == "port" && label.value == std::to_string(port));
            if (!on_port) continue;
            const auto extras = collection.extras.find({f, m});
            REQUIRE(extras != collection.extras.end());
            REQUIRE(extras->second.native);
            out.push_back({family.metric[m], *extras->second.native});
        }
    }
    return out;
}

uint64_t transitions_on(const tcpstatesd::CountTables& tables, uint16_t port) {
    uint64_t n = 0;
    for (const auto& tuple : tables.tuples())
        if (tuple.key.port == port)
            for (const auto& row : tuple.counts.transitions)
                for (uint64_t count : row) n += count;
    return n;
}

// Each native bucket in its classic bucket (the first classic bound at or above its upper
// bound; the zero bucket in the first), compared with the classic counts; and with the count.
void check_agreement(const std::vector<PortSample>& samples) {
    for (const PortSample& s : samples) {
        std::string labels;
        for (const auto& label : s.sample.label) labels += label.name + "=" + label.value + " ";
        INFO(labels);
        const auto& classic = s.sample.histogram.bucket;  // cumulative, +Inf last
        std::vector<uint64_t> from_native(classic.size(), 0);
        from_native[0] += s.native.zero_count;
        uint64_t native_total = s.native.zero_count;
        for (const auto& [index, n] : s.native.positive) {
            const double upper =
                std::exp2(std::ldexp(static_cast<double>(index), -s.native.schema));
            size_t bucket = 0;
            while (bucket + 1 < classic.size() && classic[bucket].upper_bound < upper) ++bucket;
            from_native[bucket] += n;
            native_total += n;
        }
        uint64_t previous = 0;
        for (size_t i = 0; i < classic.size(); ++i) {
            INFO("classic bucket le=" << classic[i].upper_bound);
            CHECK(from_native[i] == classic[i].cumulative_count - previous);
            previous = classic[i].cumulative_count;
        }
        CHECK(native_total == s.sample.histogram.sample_count);
        CHECK(s.native.schema == 3);
    }
}

}  // namespace

TEST_CASE("native buckets agree with the classic buckets exactly, summed per classic bucket",
          "[native]") {
    REQUIRE_BPF();
    constexpr int kConnections = 40;
    NativeOnPort on_port;
    start_listening(on_port.listener);
    // Each connection makes 10 transitions, the listener 1 so far (CLOSE -> LISTEN).
    const auto run = [&](int connections, uint64_t total) {
        for (int i = 0; i < connections; ++i) run_connection(AF_INET, on_port.listener);
        const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
        while (transitions_on(on_port.counting.tables, on_port.port) < total &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        INFO("transitions on the port: " << transitions_on(on_port.counting.tables, on_port.port));
        REQUIRE(transitions_on(on_port.counting.tables, on_port.port) == total);
    };
    run(kConnections / 2, 1 + 10 * kConnections / 2);
    std::vector<PortSample> samples = port_samples(on_port.metrics.collect(), on_port.port);
    // Durations with a known start: 8 kinds of transition of each connection.
    CHECK(samples.size() == 8);
    check_agreement(samples);

    // Folded by a swap, then counted on in the new tables.
    on_port.metrics.swap();
    run(kConnections / 2, 10 * kConnections / 2);
    samples = port_samples(on_port.metrics.collect(), on_port.port);
    uint64_t observations = 0;
    for (const PortSample& s : samples) observations += s.sample.histogram.sample_count;
    CHECK(observations == 8 * kConnections);
    check_agreement(samples);
    CHECK(on_port.counting.program.read_counters()[TCPSTATES_COUNTER_NATIVE_LOST] == 0);
}

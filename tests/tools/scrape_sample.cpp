// Serves a registry shaped like the daemon's (labelled counters, gauges, histograms, a label
// value with \, " and a newline, the process collector, the server's own scrape metrics)
// through the real HttpServer, scrapes it over loopback and writes the body to a file, for
// `promtool check metrics` in the test suite.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "http/http_server.hpp"
#include "http_client.hpp"
#include "metrics/process_collector.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: scrape_sample OUTPUT_FILE\n";
        return 2;
    }
    try {
        auto registry = std::make_shared<prometheus::Registry>();
        auto& transitions = prometheus::BuildCounter()
                                .Name("tcpstates_transitions_total")
                                .Help("TCP state transitions seen.")
                                .Register(*registry);
        transitions
            .Add({{"family", "ipv4"}, {"from_state", "SYN_SENT"}, {"to_state", "ESTABLISHED"}})
            .Increment(12);
        transitions
            .Add({{"family", "ipv6"}, {"from_state", "ESTABLISHED"}, {"to_state", "FIN_WAIT1"}})
            .Increment(3);
        prometheus::BuildGauge()
            .Name("tcpstates_sockets")
            .Help("Sockets currently in each state.")
            .Register(*registry)
            .Add({{"family", "ipv4"}, {"state", "ESTABLISHED"}})
            .Set(4);
        auto& duration =
            prometheus::BuildHistogram()
                .Name("tcpstates_state_duration_seconds")
                .Help("Time a socket spent in a state before the next one.")
                .Register(*registry)
                .Add({{"family", "ipv4"}, {"state", "SYN_SENT"}, {"next_state", "ESTABLISHED"}},
                     prometheus::Histogram::BucketBoundaries{1e-5, 2.5e-5, 1e-4, 1e-3, 1});
        duration.Observe(2e-5);
        duration.Observe(0.5);
        prometheus::BuildGauge()
            .Name("tcpstatesd_sample_label_escaping")
            .Help("A label value holding a backslash, a quote and a newline.")
            .Register(*registry)
            .Add({{"value", "a\\b\"c\nd"}})
            .Set(1);

        tcpstatesd::HttpServerOptions options;
        options.listen_addresses = {
            tcpstatesd::parse_listen_address("127.0.0.1:0", tcpstatesd::PortZero::Allowed)};
        options.telemetry_path = "/metrics";
        options.max_threads = 1;
        tcpstatesd::HttpServer server(
            options, registry, [] { return true; }, [] { return true; },
            {std::make_shared<tcpstatesd::ProcessCollector>()});
        const uint16_t port = server.bound_ports().at(0);
        // A first scrape so that the scrape metrics have observations in the second.
        tcpstatesd::test::request("127.0.0.1", port, "GET", "/metrics");
        const auto reply = tcpstatesd::test::request("127.0.0.1", port, "GET", "/metrics");
        if (reply.status != 200 || reply.body.find("process_open_fds") == std::string::npos) {
            std::cerr << "scrape failed: status " << reply.status << "\n" << reply.body;
            return 1;
        }
        std::ofstream(argv[1], std::ios::binary) << reply.body;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "scrape_sample: " << e.what() << "\n";
        return 1;
    }
}

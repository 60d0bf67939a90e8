#include "exposition/openmetrics_text.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <catch2/catch.hpp>
#include <set>
#include <sstream>
#include <string>

#include "exposition/prometheus_text.hpp"
#include "metric_families.hpp"

using tcpstatesd::openmetrics_text;
using tcpstatesd::prometheus_text;
using tcpstatesd::test::counter_metric;
using tcpstatesd::test::sample_families;

namespace {

// The sample lines of an exposition (every line but comments and "# EOF").
std::set<std::string> sample_lines(const std::string& exposition) {
    std::set<std::string> lines;
    std::istringstream in(exposition);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line[0] != '#') lines.insert(line);
    }
    return lines;
}

}  // namespace

TEST_CASE("OpenMetrics: families, units, escapes, the counter's _total and # EOF") {
    CHECK(openmetrics_text({sample_families(), {}}) ==
          "# HELP test_events Events, \\\"quoted\\\" \\\\ and\\nnewline.\n"
          "# TYPE test_events counter\n"
          "test_events_total{path=\"a\\\"b\\\\c\\nd\",kind=\"x\"} 3\n"
          "test_events_total{path=\"plain\",kind=\"y\"} 0.3\n"
          "# HELP test_size_bytes Size.\n"
          "# TYPE test_size_bytes gauge\n"
          "# UNIT test_size_bytes bytes\n"
          "test_size_bytes 1234567.891\n"
          "# HELP test_duration_seconds Durations.\n"
          "# TYPE test_duration_seconds histogram\n"
          "# UNIT test_duration_seconds seconds\n"
          "test_duration_seconds_bucket{state=\"ESTABLISHED\",le=\"1e-05\"} 1\n"
          "test_duration_seconds_bucket{state=\"ESTABLISHED\",le=\"1\"} 2\n"
          "test_duration_seconds_bucket{state=\"ESTABLISHED\",le=\"+Inf\"} 4\n"
          "test_duration_seconds_count{state=\"ESTABLISHED\"} 4\n"
          "test_duration_seconds_sum{state=\"ESTABLISHED\"} 5007.25\n"
          "# HELP test_empty No series.\n"
          "# TYPE test_empty counter\n"
          "# EOF\n");
}

TEST_CASE(
    "OpenMetrics: a histogram without the +Inf bucket gets it, a counter without _total "
    "keeps its name as unknown") {
    prometheus::ClientMetric partial;
    partial.histogram.sample_count = 5;
    partial.histogram.sample_sum = 2;
    partial.histogram.bucket = {{3, 0.5}};
    const prometheus::MetricFamily histogram{"h", "", prometheus::MetricType::Histogram, {partial}};
    const prometheus::MetricFamily counter{
        "requests", "", prometheus::MetricType::Counter, {counter_metric({}, 7)}};
    CHECK(openmetrics_text({{histogram, counter}, {}}) ==
          "# TYPE h histogram\n"
          "h_bucket{le=\"0.5\"} 3\n"
          "h_bucket{le=\"+Inf\"} 5\n"
          "h_count 5\n"
          "h_sum 2\n"
          "# TYPE requests unknown\n"
          "requests 7\n"
          "# EOF\n");
}

TEST_CASE("OpenMetrics: the same sample lines as the text format") {
    // What the daemon's registry holds, made by prometheus-cpp itself: the numbers (values and
    // le bounds) must be the same strings, so that each series is the same in both formats.
    prometheus::Registry registry;
    auto& counters = prometheus::BuildCounter().Name("c_total").Help("C.").Register(registry);
    counters.Add({{"a", "x\"y\\z\nw"}}).Increment(0.1 + 0.2);
    counters.Add({{"a", "b"}}).Increment(123456789012345678.0);
    prometheus::BuildGauge().Name("g_seconds").Help("G.").Register(registry).Add({}).Set(1e-07);
    auto& histogram = prometheus::BuildHistogram().Name("h_seconds").Help("H.").Register(registry);
    auto& observed = histogram.Add(
        {{"state", "SYN_SENT"}},
        prometheus::Histogram::BucketBoundaries{1e-05, 2.5e-05, 0.001, 1, 2.5, 10, 3600});
    for (const double value : {5e-06, 0.0005, 3.0, 7200.0}) observed.Observe(value);
    const auto families = registry.Collect();

    const auto text = sample_lines(prometheus_text(families));
    const auto openmetrics = sample_lines(openmetrics_text({families, {}}));
    CHECK(text.size() == 2 + 1 + 8 + 2);  // counters, gauge, 8 buckets with +Inf, count, sum
    CHECK(openmetrics == text);
}

TEST_CASE("OpenMetrics: an exemplar on the line of the bucket its value falls in") {
    // sample_families()' histogram: buckets 1e-05, 1, +Inf (the third family).
    tcpstatesd::Collection collection{sample_families(), {}};
    collection.extras[{2, 0}].exemplar = tcpstatesd::Exemplar{
        {{"local", "127.0.0.1:443"}, {"remote", "10.0.0.2:51234"}}, 0.25, 1733472000123};
    const std::string text = openmetrics_text(collection);
    CHECK(text.find("test_duration_seconds_bucket{state=\"ESTABLISHED\",le=\"1e-05\"} 1\n") !=
          std::string::npos);
    CHECK(text.find("test_duration_seconds_bucket{state=\"ESTABLISHED\",le=\"1\"} 2 # "
                    "{local=\"127.0.0.1:443\",remote=\"10.0.0.2:51234\"} 0.25 "
                    "1733472000.123\n") != std::string::npos);
    CHECK(text.find("le=\"+Inf\"} 4\n") != std::string::npos);

    collection.extras[{2, 0}].exemplar->value = 3600;  // beyond the last bound
    CHECK(openmetrics_text(collection)
              .find("le=\"+Inf\"} 4 # {local=\"127.0.0.1:443\","
                    "remote=\"10.0.0.2:51234\"} 3600 1733472000.123\n") != std::string::npos);
}

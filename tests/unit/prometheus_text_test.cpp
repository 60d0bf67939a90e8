#include "exposition/prometheus_text.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "exposition/text_syntax.hpp"
#include "metric_families.hpp"

using tcpstatesd::exposition_number;
using tcpstatesd::prometheus_text;
using tcpstatesd::test::counter_metric;

TEST_CASE("Text format: byte for byte what prometheus-cpp's TextSerializer writes") {
    // prometheus-cpp's own families and serializer are the reference: a counter whose label
    // values need escaping, numbers that show the 16 digits, a histogram and a summary (their
    // lines in prometheus-cpp's order), and by hand what the registry cannot make: a timestamp,
    // an untyped family, a histogram without its +Inf bucket, a family without series or HELP.
    prometheus::Registry registry;
    auto& counters =
        prometheus::BuildCounter().Name("c_total").Help("C \"quoted\".").Register(registry);
    counters.Add({{"a", "x\"y\\z\nw"}, {"b", ""}}).Increment(0.1 + 0.2);
    counters.Add({{"a", "b"}}).Increment(123456789012345678.0);
    prometheus::BuildGauge().Name("g_seconds").Help("G.").Register(registry).Add({}).Set(-1e-07);
    auto& histogram = prometheus::BuildHistogram().Name("h_seconds").Help("H.").Register(registry);
    auto& observed = histogram.Add(
        {{"state", "SYN_SENT"}},
        prometheus::Histogram::BucketBoundaries{1e-05, 2.5e-05, 0.001, 1, 2.5, 10, 3600});
    for (const double value : {5e-06, 0.0005, 3.0, 7200.0}) observed.Observe(value);
    auto& summary = prometheus::BuildSummary().Name("s").Help("S.").Register(registry).Add(
        {{"k", "v"}}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.99, 0.001}});
    for (const double value : {1.0, 2.0, 4.0}) summary.Observe(value);
    auto families = registry.Collect();

    auto stamped = counter_metric({{"a", "t"}}, 1);
    stamped.timestamp_ms = 1733472000123;
    families.push_back({"stamped_total", "Stamped.", prometheus::MetricType::Counter, {stamped}});
    prometheus::ClientMetric untyped;
    untyped.untyped.value = INFINITY;
    untyped.label = {{"u", "1"}};
    families.push_back({"u", "", prometheus::MetricType::Untyped, {untyped}});
    prometheus::ClientMetric partial;
    partial.histogram.sample_count = 5;
    partial.histogram.sample_sum = 2;
    partial.histogram.bucket = {{3, 0.5}};
    partial.timestamp_ms = 42;
    families.push_back({"partial", "", prometheus::MetricType::Histogram, {partial}});
    families.push_back({"empty_total", "", prometheus::MetricType::Counter, {}});

    const std::string expected = prometheus::TextSerializer().Serialize(families);
    CHECK(prometheus_text(families) == expected);
    // The reference holds what the test means it to: every kind, escapes, both timestamps.
    CHECK(expected.find("# TYPE s summary\ns_count{k=\"v\"} 3\n") != std::string::npos);
    CHECK(expected.find("c_total{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 0.3\n") != std::string::npos);
    CHECK(expected.find("stamped_total{a=\"t\"} 1 1733472000123\n") != std::string::npos);
    CHECK(expected.find("partial_bucket{le=\"+Inf\"} 5 42\n") != std::string::npos);
    CHECK(expected.find("u{u=\"1\"} +Inf\n") != std::string::npos);
    CHECK(expected.find("# TYPE empty_total counter\n") != std::string::npos);
}

TEST_CASE("Text format: NaN as the format spells it, a HELP text's backslash and newline escaped") {
    // Where prometheus-cpp 1.0.1 writes "Nan" and the HELP text as it is (a newline in it
    // would end the line early).
    prometheus::ClientMetric not_a_number;
    not_a_number.gauge.value = NAN;
    const std::vector<prometheus::MetricFamily> families{
        {"g", "A \"quoted\" \\ and\nnewline.", prometheus::MetricType::Gauge, {not_a_number}}};
    CHECK(prometheus_text(families) ==
          "# HELP g A \"quoted\" \\\\ and\\nnewline.\n"
          "# TYPE g gauge\n"
          "g NaN\n");
}

TEST_CASE("Text formats: numbers") {
    CHECK(exposition_number(0) == "0");
    CHECK(exposition_number(3600) == "3600");
    CHECK(exposition_number(0.1 + 0.2) == "0.3");
    CHECK(exposition_number(2.5e-05) == "2.5e-05");
    CHECK(exposition_number(1e20) == "1e+20");
    CHECK(exposition_number(NAN) == "NaN");
    CHECK(exposition_number(INFINITY) == "+Inf");
    CHECK(exposition_number(-INFINITY) == "-Inf");
}

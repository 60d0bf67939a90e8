// Metric families for the exposition tests: one of each kind the daemon exports, by hand so
// that their order and values are known.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <cmath>
#include <vector>

namespace tcpstatesd::test {

inline prometheus::ClientMetric counter_metric(std::vector<prometheus::ClientMetric::Label> labels,
                                               double value) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    metric.counter.value = value;
    return metric;
}

// A counter whose HELP and label values need escaping, with a value that shows the number
// format (0.1 + 0.2); a gauge and a histogram whose names end in a unit, the histogram's
// bounds including an integer; a family without series.
inline std::vector<prometheus::MetricFamily> sample_families() {
    prometheus::MetricFamily counter{
        "test_events_total",
        "Events, \"quoted\" \\ and\nnewline.",
        prometheus::MetricType::Counter,
        {counter_metric({{"path", "a\"b\\c\nd"}, {"kind", "x"}}, 3),
         counter_metric({{"path", "plain"}, {"kind", "y"}}, 0.1 + 0.2)}};
    prometheus::ClientMetric size;
    size.gauge.value = 1234567.891;
    prometheus::MetricFamily gauge{
        "test_size_bytes", "Size.", prometheus::MetricType::Gauge, {size}};
    prometheus::ClientMetric durations;
    durations.label = {{"state", "ESTABLISHED"}};
    durations.histogram.sample_count = 4;
    durations.histogram.sample_sum = 5007.25;
    durations.histogram.bucket = {{1, 1e-05}, {2, 1}, {4, INFINITY}};
    prometheus::MetricFamily histogram{
        "test_duration_seconds", "Durations.", prometheus::MetricType::Histogram, {durations}};
    prometheus::MetricFamily empty{
        "test_empty_total", "No series.", prometheus::MetricType::Counter, {}};
    return {counter, gauge, histogram, empty};
}

}  // namespace tcpstatesd::test

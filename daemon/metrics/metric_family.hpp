// Building the metric families that collectors compute at scrape time (values read from the
// kernel or /proc rather than kept in the registry).
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

namespace tcpstatesd {

prometheus::MetricFamily metric_family(const char* name, const char* help,
                                       prometheus::MetricType type);
// Sorts labels by name, as prometheus-cpp's registry keeps them: every family's samples list
// their labels in the same order.
void sort_labels(std::vector<prometheus::ClientMetric::Label>& labels);
// Appends one sample (a counter or gauge value, as the family's type says) with its labels,
// sorted.
void add_sample(prometheus::MetricFamily& family,
                std::vector<prometheus::ClientMetric::Label> labels, double value);
// A family of one unlabelled sample.
prometheus::MetricFamily single_sample(const char* name, const char* help,
                                       prometheus::MetricType type, double value);

}  // namespace tcpstatesd

#include "metrics/metric_family.hpp"

#include <algorithm>
#include <utility>

namespace tcpstatesd {

prometheus::MetricFamily metric_family(const char* name, const char* help,
                                       prometheus::MetricType type) {
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = type;
    return family;
}

void sort_labels(std::vector<prometheus::ClientMetric::Label>& labels) {
    std::sort(labels.begin(), labels.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
}

void add_sample(prometheus::MetricFamily& family,
                std::vector<prometheus::ClientMetric::Label> labels, double value) {
    prometheus::ClientMetric sample;
    sort_labels(labels);
    sample.label = std::move(labels);
    if (family.type == prometheus::MetricType::Counter)
        sample.counter.value = value;
    else
        sample.gauge.value = value;
    family.metric.push_back(std::move(sample));
}

prometheus::MetricFamily single_sample(const char* name, const char* help,
                                       prometheus::MetricType type, double value) {
    prometheus::MetricFamily family = metric_family(name, help, type);
    add_sample(family, {}, value);
    return family;
}

}  // namespace tcpstatesd

// What the Prometheus text format 0.0.4 and OpenMetrics text 1.0.0 write alike: numbers,
// escaped label values, a sample's name and labels. Written once, so that a series has the same
// name, labels and `le` strings in both formats.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

#include <string>
#include <string_view>
#include <vector>

namespace tcpstatesd {

// A family's type as the text format names it in "# TYPE" (OpenMetrics calls untyped "unknown").
const char* type_name(prometheus::MetricType type);

// A number as both text formats write it: 16 significant digits (so "0.3" for 0.1 + 0.2 and
// "1" for 1.0, as prometheus-cpp's own text format writes them), "NaN", "+Inf" or "-Inf".
void append_number(std::string& out, double value);
std::string exposition_number(double value);

// Backslash, double quote and newline escaped: a label value in either format, a HELP text in
// OpenMetrics.
void append_escaped(std::string& out, std::string_view text);

// name="value" pairs, comma-separated, without the braces.
void append_labels(std::string& out, const std::vector<prometheus::ClientMetric::Label>& labels);

// A sample line up to its value: `name` and `suffix`, then the labels in braces (none without
// any), `extra_label` (le, quantile) last with `extra_value` when given, and a space.
void append_series(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<prometheus::ClientMetric::Label>& labels,
                   const char* extra_label = nullptr, double extra_value = 0);

}  // namespace tcpstatesd

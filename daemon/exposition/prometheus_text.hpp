// The Prometheus text format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/):
// the families as prometheus-cpp's TextSerializer writes them, byte for byte (the order of a
// histogram's and a summary's lines included), but for what its 1.0.1 gets wrong: NaN is
// "NaN" (not "Nan"), and a HELP text has its backslashes and newlines escaped, as the format
// requires. Appended to one string: prometheus-cpp's, through std::ostream, made text scrapes
// at the series cap 17-35% slower than OpenMetrics ones (docs/performance.md, "Scrapes").
#pragma once

#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace tcpstatesd {

std::string prometheus_text(const std::vector<prometheus::MetricFamily>& families);

}  // namespace tcpstatesd

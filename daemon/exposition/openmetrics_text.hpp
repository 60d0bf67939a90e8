// OpenMetrics text 1.0.0 (https://github.com/OpenObservability/OpenMetrics, specification
// OpenMetrics.md): the families prometheus-cpp collects, with the same series as its text
// format. A counter's family is named without its "_total" and its sample with it; a family
// whose name ends in a base unit ("_seconds", "_bytes", ...) declares it in "# UNIT"; the
// body ends with "# EOF".
#pragma once

#include <string>

#include "exposition/collection.hpp"

namespace tcpstatesd {

std::string openmetrics_text(const Collection& collection);

// A number as prometheus-cpp's text format writes it (16 significant digits, so "0.3" for
// 0.1 + 0.2 and "1" for 1.0), "NaN", "+Inf" or "-Inf": the le label of a bucket is the same
// string in both formats, so the series are the same.
std::string openmetrics_number(double value);

}  // namespace tcpstatesd

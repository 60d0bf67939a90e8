// OpenMetrics text 1.0.0 (https://github.com/OpenObservability/OpenMetrics, specification
// OpenMetrics.md): the collected families, with the same series as the text format
// (prometheus_text.hpp). A counter's family is named without its "_total" and its sample with
// it; a family whose name ends in a base unit ("_seconds", "_bytes", ...) declares it in
// "# UNIT"; the body ends with "# EOF".
#pragma once

#include <string>

#include "exposition/collection.hpp"

namespace tcpstatesd {

std::string openmetrics_text(const Collection& collection);

}  // namespace tcpstatesd

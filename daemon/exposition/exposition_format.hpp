// The exposition formats of the telemetry path, chosen by the scraper's Accept header: the
// Prometheus text format 0.0.4 (the default, prometheus_text.hpp), OpenMetrics text 1.0.0
// (openmetrics_text.hpp) and the Prometheus protobuf format, length-delimited
// MetricFamily messages (protobuf_delimited.hpp). All three serialize the same collected
// families, so a series has the same name, labels and value in each.
#pragma once

#include <cstddef>
#include <string>

#include "exposition/collection.hpp"

namespace tcpstatesd {

enum class ExpositionFormat { Text, OpenMetrics, Protobuf };
inline constexpr size_t kExpositionFormats = 3;

// The format an Accept header (nullptr when absent) prefers among those served: the highest
// q value wins, the first listed on a tie. Text when the header is absent, names none of them
// (e.g. only application/json) or cannot be read: a scraper that asks for nothing we know is
// given the format every Prometheus reads.
ExpositionFormat negotiate_format(const char* accept);

// The Content-Type of a body in `format`.
const char* content_type(ExpositionFormat format);

// `collection` in `format`.
std::string serialize(ExpositionFormat format, const Collection& collection);

}  // namespace tcpstatesd

// The Prometheus protobuf exposition format: each family a MetricFamily message of
// io/prometheus/client/metrics.proto (prometheus/client_model), preceded by its length as a
// varint ("encoding=delimited"). Written with protozero (header-only, no generated code): the
// field numbers below are the schema's. Histograms carry the classic buckets as client
// libraries send them: cumulative, without the +Inf bucket (its count is sample_count).
#pragma once

#include <string>

#include "exposition/collection.hpp"

namespace tcpstatesd {

std::string protobuf_delimited(const Collection& collection);

}  // namespace tcpstatesd

// The labels of an exemplar naming its connection: local="[2001:db8::1]:443",
// remote="10.0.0.2:51234" and the owner's cgroup, within OpenMetrics' limit on an exemplar's
// label names and values together. The addresses always fit (two IPv6 addresses at their
// longest take 105 characters with their names); the cgroup takes what is left, its tail kept
// after "..." when it is longer, left out when not even that fits.
#pragma once

#include <prometheus/client_metric.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tcpstates.h"

namespace tcpstatesd {

// OpenMetrics: "The combined length of the label names and values of an Exemplar's LabelSet
// MUST NOT exceed 128 UTF-8 character code points."
constexpr size_t kExemplarLabelsLimit = 128;

// "10.0.0.2:51234", "[2001:db8::1]:443" (addresses in network byte order, IPv4 in the first 4).
std::string endpoint(bool ipv6, const uint8_t (&address)[16], uint16_t port);

// `cgroup` empty: no cgroup label (the owner is not known).
std::vector<prometheus::ClientMetric::Label> exemplar_labels(const tcpstates_exemplar& exemplar,
                                                             std::string_view cgroup);

}  // namespace tcpstatesd

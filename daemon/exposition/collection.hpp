// What a scrape serializes: the families in prometheus-cpp's types, and for histogram samples
// what those types cannot carry (prometheus-cpp has neither native histograms nor exemplars).
// The text format 0.0.4 serializes the families alone; OpenMetrics text adds the exemplars;
// the protobuf format adds both.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace tcpstatesd {

// One observation named by labels of its own (OpenMetrics: at most 128 characters of label
// names and values together), attached to the bucket it falls in.
struct Exemplar {
    std::vector<prometheus::ClientMetric::Label> labels;
    double value = 0;
    int64_t timestamp_ms = 0;
};

// A native histogram's buckets: Prometheus' exponential buckets of `schema` (bucket i holds
// (2^((i-1)/2^schema), 2^(i/2^schema)]), sparse. The sample's sum is the classic histogram's;
// its count, in the protobuf format, is zero_count plus these buckets' (which may exceed the
// classic count by observations made while the scrape read: the native buckets are read after
// the classic ones, bpf/counts.bpf.h).
struct NativeBuckets {
    int32_t schema = 0;
    double zero_threshold = 0;
    uint64_t zero_count = 0;
    std::vector<std::pair<int32_t, uint64_t>> positive;  // (index, observations), by index, none 0
};

struct HistogramExtras {
    std::optional<NativeBuckets> native;
    std::optional<Exemplar> exemplar;
};

// A sample: the index of its family in Collection::families, and its own in that family's.
struct SampleIndex {
    size_t family = 0;
    size_t metric = 0;
    // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 on a defaulted <=>
    auto operator<=>(const SampleIndex&) const = default;
};

struct Collection {
    std::vector<prometheus::MetricFamily> families;
    std::map<SampleIndex, HistogramExtras> extras;  // histogram samples that have any

    // Appends `more` after these families (its samples' indexes move with it).
    void append(Collection more);
    // The exemplar of a sample, if it has one.
    const Exemplar* exemplar(SampleIndex sample) const;
};

// A source of a scrape's families. Collect(), prometheus-cpp's interface, gives the families
// alone (as the text format shows them).
class Collector : public prometheus::Collectable {
public:
    virtual Collection collect() const = 0;
    std::vector<prometheus::MetricFamily> Collect() const final { return collect().families; }
};

}  // namespace tcpstatesd

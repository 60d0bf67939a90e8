#include "exposition/protobuf_delimited.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>
#include <protozero/pbf_writer.hpp>
#include <protozero/varint.hpp>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace tcpstatesd {

namespace {

// Field numbers and enum values of metrics.proto (package io.prometheus.client).
namespace family_field {
constexpr protozero::pbf_tag_type kName = 1, kHelp = 2, kType = 3, kMetric = 4;
}
namespace metric_field {
constexpr protozero::pbf_tag_type kLabel = 1, kGauge = 2, kCounter = 3, kSummary = 4, kUntyped = 5,
                                  kTimestampMs = 6, kHistogram = 7;
}
namespace label_field {
constexpr protozero::pbf_tag_type kName = 1, kValue = 2;
}
constexpr protozero::pbf_tag_type kValueField = 1;  // of Gauge, Counter and Untyped
namespace summary_field {
constexpr protozero::pbf_tag_type kSampleCount = 1, kSampleSum = 2, kQuantile = 3;
constexpr protozero::pbf_tag_type kQuantileQuantile = 1, kQuantileValue = 2;
}  // namespace summary_field
namespace histogram_field {
constexpr protozero::pbf_tag_type kSampleCount = 1, kSampleSum = 2, kBucket = 3;
constexpr protozero::pbf_tag_type kBucketCumulativeCount = 1, kBucketUpperBound = 2,
                                  kBucketExemplar = 3;
constexpr protozero::pbf_tag_type kSchema = 5, kZeroThreshold = 6, kZeroCount = 7,
                                  kPositiveSpan = 12, kPositiveDelta = 13;
constexpr protozero::pbf_tag_type kSpanOffset = 1, kSpanLength = 2;
}  // namespace histogram_field
namespace exemplar_field {
constexpr protozero::pbf_tag_type kLabel = 1, kValue = 2, kTimestamp = 3;
constexpr protozero::pbf_tag_type kSeconds = 1, kNanos = 2;  // google.protobuf.Timestamp
}  // namespace exemplar_field

// A native histogram's observations: its zero bucket's and its buckets'.
uint64_t observations(const NativeBuckets& native) {
    uint64_t total = native.zero_count;
    for (const auto& [index, n] : native.positive) total += n;
    return total;
}

// The native fields of a Histogram message: runs of consecutive buckets (spans: the first's
// offset is its first index, the others' the gap after the previous run) and each bucket's
// count as the difference from the bucket before. A histogram without buckets gets one empty
// span, what Prometheus takes for native whatever its version (older ones also take a zero
// threshold > 0, which these have).
void write_native(protozero::pbf_writer& histogram, const NativeBuckets& native) {
    histogram.add_sint32(histogram_field::kSchema, native.schema);
    histogram.add_double(histogram_field::kZeroThreshold, native.zero_threshold);
    histogram.add_uint64(histogram_field::kZeroCount, native.zero_count);
    const auto& buckets = native.positive;
    if (buckets.empty()) {
        protozero::pbf_writer span(histogram, histogram_field::kPositiveSpan);
        span.add_sint32(histogram_field::kSpanOffset, 0);
        span.add_uint32(histogram_field::kSpanLength, 0);
    }
    for (size_t start = 0; start < buckets.size();) {
        size_t end = start + 1;
        while (end < buckets.size() && buckets[end].first == buckets[end - 1].first + 1) ++end;
        protozero::pbf_writer span(histogram, histogram_field::kPositiveSpan);
        span.add_sint32(
            histogram_field::kSpanOffset,
            start == 0 ? buckets[0].first : buckets[start].first - buckets[start - 1].first - 1);
        span.add_uint32(histogram_field::kSpanLength, static_cast<uint32_t>(end - start));
        start = end;
    }
    std::vector<int64_t> deltas;
    deltas.reserve(buckets.size());
    int64_t previous = 0;
    for (const auto& [index, n] : buckets) {
        deltas.push_back(static_cast<int64_t>(n) - previous);
        previous = static_cast<int64_t>(n);
    }
    histogram.add_packed_sint64(histogram_field::kPositiveDelta, deltas.begin(), deltas.end());
}

int32_t metric_type(prometheus::MetricType type) {
    switch (type) {
        case prometheus::MetricType::Counter:
            return 0;
        case prometheus::MetricType::Gauge:
            return 1;
        case prometheus::MetricType::Summary:
            return 2;
        case prometheus::MetricType::Untyped:
            return 3;
        case prometheus::MetricType::Histogram:
            return 4;
    }
    return 3;
}

void write_value(protozero::pbf_writer& metric, protozero::pbf_tag_type field, double value) {
    protozero::pbf_writer holder(metric, field);
    holder.add_double(kValueField, value);
}

void write_exemplar(protozero::pbf_writer& bucket, const Exemplar& exemplar) {
    protozero::pbf_writer out(bucket, histogram_field::kBucketExemplar);
    for (const auto& label : exemplar.labels) {
        protozero::pbf_writer pair(out, exemplar_field::kLabel);
        pair.add_string(label_field::kName, label.name);
        pair.add_string(label_field::kValue, label.value);
    }
    out.add_double(exemplar_field::kValue, exemplar.value);
    protozero::pbf_writer timestamp(out, exemplar_field::kTimestamp);
    const int64_t seconds = exemplar.timestamp_ms / 1000;  // not before 1970
    timestamp.add_int64(exemplar_field::kSeconds, seconds);
    timestamp.add_int32(exemplar_field::kNanos,
                        static_cast<int32_t>(exemplar.timestamp_ms - seconds * 1000) * 1000000);
}

void write_metric(protozero::pbf_writer& family, prometheus::MetricType type,
                  const prometheus::ClientMetric& metric, const HistogramExtras* extras) {
    protozero::pbf_writer out(family, family_field::kMetric);
    for (const auto& label : metric.label) {
        protozero::pbf_writer pair(out, metric_field::kLabel);
        pair.add_string(label_field::kName, label.name);
        pair.add_string(label_field::kValue, label.value);
    }
    switch (type) {
        case prometheus::MetricType::Counter:
            write_value(out, metric_field::kCounter, metric.counter.value);
            break;
        case prometheus::MetricType::Gauge:
            write_value(out, metric_field::kGauge, metric.gauge.value);
            break;
        case prometheus::MetricType::Untyped:
            write_value(out, metric_field::kUntyped, metric.untyped.value);
            break;
        case prometheus::MetricType::Summary: {
            protozero::pbf_writer summary(out, metric_field::kSummary);
            summary.add_uint64(summary_field::kSampleCount, metric.summary.sample_count);
            summary.add_double(summary_field::kSampleSum, metric.summary.sample_sum);
            for (const auto& quantile : metric.summary.quantile) {
                protozero::pbf_writer q(summary, summary_field::kQuantile);
                q.add_double(summary_field::kQuantileQuantile, quantile.quantile);
                q.add_double(summary_field::kQuantileValue, quantile.value);
            }
            break;
        }
        case prometheus::MetricType::Histogram: {
            protozero::pbf_writer histogram(out, metric_field::kHistogram);
            const NativeBuckets* native = extras && extras->native ? &*extras->native : nullptr;
            const Exemplar* exemplar = extras && extras->exemplar ? &*extras->exemplar : nullptr;
            // With native buckets, the count is theirs (read last, they may hold observations
            // the classic buckets, read first, do not yet: NativeBuckets), and the classic
            // buckets are capped at it, so that neither contradicts the count.
            const uint64_t count = native ? observations(*native) : metric.histogram.sample_count;
            histogram.add_uint64(histogram_field::kSampleCount, count);
            histogram.add_double(histogram_field::kSampleSum, metric.histogram.sample_sum);
            // The exemplar in the bucket its value falls in. The +Inf bucket is implied by
            // sample_count, written only to carry an exemplar (as client_golang does).
            for (const auto& bucket : metric.histogram.bucket) {
                const bool holds = exemplar != nullptr && exemplar->value <= bucket.upper_bound;
                if (bucket.upper_bound == INFINITY && !holds) continue;
                protozero::pbf_writer b(histogram, histogram_field::kBucket);
                b.add_uint64(histogram_field::kBucketCumulativeCount,
                             std::min(bucket.cumulative_count, count));
                b.add_double(histogram_field::kBucketUpperBound, bucket.upper_bound);
                if (holds) write_exemplar(b, *std::exchange(exemplar, nullptr));
            }
            if (native) write_native(histogram, *native);
            break;
        }
    }
    if (metric.timestamp_ms != 0) out.add_int64(metric_field::kTimestampMs, metric.timestamp_ms);
}

}  // namespace

std::string protobuf_delimited(const Collection& collection) {
    std::string out;
    std::string message;  // one family's, reused: its length must precede it
    for (size_t family_index = 0; family_index < collection.families.size(); ++family_index) {
        const prometheus::MetricFamily& family = collection.families[family_index];
        // A family without samples carries only metadata; client libraries send none.
        if (family.metric.empty()) continue;
        message.clear();
        {
            protozero::pbf_writer writer(message);
            writer.add_string(family_field::kName, family.name);
            if (!family.help.empty()) writer.add_string(family_field::kHelp, family.help);
            writer.add_enum(family_field::kType, metric_type(family.type));
            for (size_t i = 0; i < family.metric.size(); ++i) {
                const auto extras = collection.extras.find({family_index, i});
                write_metric(writer, family.type, family.metric[i],
                             extras == collection.extras.end() ? nullptr : &extras->second);
            }
        }
        protozero::add_varint_to_buffer(&out, message.size());
        out += message;
    }
    return out;
}

}  // namespace tcpstatesd

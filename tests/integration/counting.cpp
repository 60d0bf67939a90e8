#include "counting.hpp"

#include <utility>

#include "kernel/native_bounds.hpp"

namespace tcpstatesd::test {

namespace {

constexpr uint32_t kTupleTableSize = 1024;
constexpr uint32_t kDurationTableSize = 256;
constexpr uint32_t kNativeTableSize = 16384;  // the daemon's least

tcpstatesd::BpfOptions counting_options(const tcpstatesd::LabelsConfig& labels,
                                        const tcpstatesd::HistogramBuckets& buckets) {
    tcpstatesd::BpfOptions options;
    options.event_details = false;
    options.labels = tcpstatesd::tuple_label_settings(labels);
    options.duration_bounds_ns = tcpstatesd::bounds_ns(buckets.durations);
    options.handshake_rtt_bounds_ns = tcpstatesd::bounds_ns(buckets.handshake_rtts);
    options.tuple_table_size = kTupleTableSize;
    options.duration_table_size = kDurationTableSize;
    options.native_schema = tcpstatesd::native_schema(buckets.native);
    options.native_table_size = kNativeTableSize;
    options.exemplar_table_size = Counting::kExemplarTableSize;
    return options;
}

}  // namespace

Counting::Counting(tcpstatesd::LabelsConfig labels_config, tcpstatesd::HistogramBuckets histograms)
    : labels(std::move(labels_config)),
      buckets(std::move(histograms)),
      program(counting_options(labels, buckets)),
      tables(program, kTupleTableSize, kDurationTableSize) {}

}  // namespace tcpstatesd::test

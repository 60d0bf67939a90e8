#include "metrics/native_histogram.hpp"

#include "kernel/native_bounds.hpp"

namespace tcpstatesd {

NativeBuckets native_buckets(int32_t schema, uint64_t zero_count,
                             const std::map<int32_t, uint64_t>& counts, uint32_t max_buckets) {
    std::map<int32_t, uint64_t> buckets;
    for (const auto& [index, n] : counts)
        if (n) buckets.emplace(index, n);
    while (buckets.size() > max_buckets && schema > TCPSTATES_NATIVE_MIN_SCHEMA) {
        std::map<int32_t, uint64_t> coarser;
        // ceil(i / 2), for negative i too (>> is arithmetic on signed values since C++20).
        for (const auto& [index, n] : buckets) coarser[(index + 1) >> 1] += n;
        buckets = std::move(coarser);
        --schema;
    }
    NativeBuckets out;
    out.schema = schema;
    out.zero_threshold = kNativeZeroThreshold;
    out.zero_count = zero_count;
    out.positive.assign(buckets.begin(), buckets.end());
    return out;
}

}  // namespace tcpstatesd

// The native histograms' settings and the bucket bounds the programs search
// (bpf/tcpstates.h, struct tcpstates_native_bounds).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "tcpstates.h"

namespace tcpstatesd {

// metrics.native_histograms (docs/configuration.md).
struct NativeHistogramSettings {
    // Off by default, for a Prometheus feature still behind a flag. Measured (bench/run.py, 5
    // rounds, a shared 2-core host), the transition program took a median 462 ns a run without
    // and 527 ns with.
    bool enabled = false;
    // Prometheus' valid schemas are -4 .. 8: 2^(2^-schema) is each bucket's growth factor. At 3
    // (9% per bucket), as client libraries default to.
    int32_t schema = 3;
    // A series with more populated buckets is served at a coarser schema (exact: each step
    // merges pairs of buckets). At schema -4, 1 ns .. 2^25 s spans 4 buckets: the least allowed.
    uint32_t max_buckets = 160;

    bool operator==(const NativeHistogramSettings&) const = default;
};
// The schema the programs count at: none when off.
inline std::optional<int32_t> native_schema(const NativeHistogramSettings& settings) {
    return settings.enabled ? std::optional<int32_t>(settings.schema) : std::nullopt;
}

constexpr uint32_t kMinNativeMaxBuckets = 4;
constexpr uint32_t kMaxNativeMaxBuckets = 10000;

// The zero bucket holds [0, 2^-128 s]: only durations of 0 ns, as integer nanoseconds are.
// 2^-128 is client libraries' default, so that histograms of several sources merge without
// widening anyone's zero bucket.
constexpr double kNativeZeroThreshold = 0x1p-128;

// Bucket `first_index + k` of `schema` ends at bound_ns[k] = floor(1e9 * 2^(index / 2^schema))
// nanoseconds: from the bucket holding 1 ns to the one ending at 2^TCPSTATES_NATIVE_TOP_LOG2 s
// (at schemas < 0: holding it).
// The programs find a duration's position in bound_ns from its cell (tcpstates_native_cell):
// cell_position[cell], or the next position when the duration exceeds that bound.
struct NativeBounds {
    int32_t first_index = 0;
    std::vector<uint64_t> bound_ns;
    uint32_t cell_bits = 0;
    std::vector<uint16_t> cell_position;  // TCPSTATES_NATIVE_CELLS entries
};
NativeBounds native_bounds(int32_t schema);

}  // namespace tcpstatesd

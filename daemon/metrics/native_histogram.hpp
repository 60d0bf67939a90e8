// A series' native buckets as served: the buckets the programs counted at the configured
// schema, made coarser where a series has more than the configured number.
#pragma once

#include <cstdint>
#include <map>

#include "exposition/collection.hpp"

namespace tcpstatesd {

// The native buckets of observations counted at `schema` (bucket index -> observations) and
// in the zero bucket. While more than `max_buckets` buckets are populated, the schema goes down
// by one: bucket i of schema s is the union of buckets 2i-1 and 2i of schema s+1, so the counts
// stay exact, only coarser. Stops at schema -4 (TCPSTATES_NATIVE_MIN_SCHEMA).
NativeBuckets native_buckets(int32_t schema, uint64_t zero_count,
                             const std::map<int32_t, uint64_t>& counts, uint32_t max_buckets);

}  // namespace tcpstatesd

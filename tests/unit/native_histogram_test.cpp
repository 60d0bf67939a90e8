// Native histograms: the bounds the programs search are the schemas' exact boundaries in whole
// nanoseconds, downscaling merges buckets exactly, and the protobuf writer's native fields read
// back with libprotobuf as Prometheus reads them.
#include <gmpxx.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>

#include "exposition/protobuf_delimited.hpp"
#include "kernel/native_bounds.hpp"
#include "metric_families.hpp"
#include "metrics/native_histogram.hpp"
#include "protobuf_reader.hpp"

using tcpstatesd::native_bounds;
using tcpstatesd::native_buckets;
using tcpstatesd::NativeBuckets;
namespace dto = io::prometheus::client;

namespace {

// Whether b <= 1e9 * 2^(index / 2^schema) < b + 1, in exact integer arithmetic: with
// n = 2^schema (1 at schemas <= 0, whose exponents are whole), raising to the n-th power keeps
// the order: b^n <= 1e9^n * 2^e < (b+1)^n, e = index (index * 2^-schema at schemas <= 0), the
// power of two moved to the side where it is whole.
bool is_floor(uint64_t b, int32_t index, int32_t schema) {
    const unsigned long n = schema > 0 ? 1UL << schema : 1UL;
    const long e = schema > 0 ? index : static_cast<long>(index) << -schema;
    mpz_class billion_n, low, high;
    mpz_ui_pow_ui(billion_n.get_mpz_t(), 1000000000UL, n);
    const mpz_class bz(static_cast<unsigned long>(b)), bz1(static_cast<unsigned long>(b + 1));
    mpz_pow_ui(low.get_mpz_t(), bz.get_mpz_t(), n);
    mpz_pow_ui(high.get_mpz_t(), bz1.get_mpz_t(), n);
    if (e >= 0)
        mpz_mul_2exp(billion_n.get_mpz_t(), billion_n.get_mpz_t(), static_cast<mp_bitcnt_t>(e));
    else {
        mpz_mul_2exp(low.get_mpz_t(), low.get_mpz_t(), static_cast<mp_bitcnt_t>(-e));
        mpz_mul_2exp(high.get_mpz_t(), high.get_mpz_t(), static_cast<mp_bitcnt_t>(-e));
    }
    return low <= billion_n && billion_n < high;
}

}  // namespace

TEST_CASE("native bounds: every bound is floor(1e9 * 2^(i/2^schema)) exactly, 1 ns to 2^25 s") {
    for (int32_t schema = TCPSTATES_NATIVE_MIN_SCHEMA; schema <= TCPSTATES_NATIVE_MAX_SCHEMA;
         ++schema) {
        INFO("schema " << schema);
        const tcpstatesd::NativeBounds bounds = native_bounds(schema);
        REQUIRE(bounds.bound_ns.size() <= TCPSTATES_NATIVE_MAX_BOUNDS);
        size_t wrong = 0;
        for (size_t k = 0; k < bounds.bound_ns.size(); ++k)
            if (!is_floor(bounds.bound_ns[k], bounds.first_index + static_cast<int32_t>(k), schema))
                ++wrong;
        CHECK(wrong == 0);
        // The first bucket holds 1 ns: the bucket before it ends below 1 ns.
        CHECK(bounds.bound_ns.front() >= 1);
        CHECK(is_floor(0, bounds.first_index - 1, schema));
        // The last reaches 2^25 s (at schemas < 0 the bucket holding it).
        CHECK(bounds.bound_ns.back() >= (uint64_t{1000000000} << TCPSTATES_NATIVE_TOP_LOG2));
        CHECK(bounds.bound_ns[bounds.bound_ns.size() - 2] <
              (uint64_t{1000000000} << TCPSTATES_NATIVE_TOP_LOG2));
    }
    CHECK(native_bounds(8).bound_ns.size() == 14054);  // the header's count at the finest schema
    CHECK_THROWS(native_bounds(9));
    CHECK_THROWS(native_bounds(-5));
}

TEST_CASE("native bounds: the programs' lookup by cell finds the binary search's bucket") {
    std::mt19937_64 random(20);
    for (int32_t schema = TCPSTATES_NATIVE_MIN_SCHEMA; schema <= TCPSTATES_NATIVE_MAX_SCHEMA;
         ++schema) {
        INFO("schema " << schema);
        const tcpstatesd::NativeBounds bounds = native_bounds(schema);
        const std::vector<uint64_t>& bound_ns = bounds.bound_ns;
        // bpf/native.bpf.h's arithmetic, for durations up to the top bound.
        const auto cell_lookup = [&](uint64_t d) {
            size_t position = bounds.cell_position[tcpstates_native_cell(d, bounds.cell_bits)];
            if (bound_ns[position] < d) ++position;
            return position;
        };
        const auto search = [&](uint64_t d) {
            return static_cast<size_t>(std::lower_bound(bound_ns.begin(), bound_ns.end(), d) -
                                       bound_ns.begin());
        };
        // Where the buckets change (each bound, one less, one more), every duration below
        // 4096 ns (where cells hold one duration), the cells' edges (powers of two and the
        // top bits' steps fall on 2^k +- 1) and random durations of every magnitude.
        std::vector<uint64_t> durations;
        for (const uint64_t b : bound_ns)
            for (const uint64_t d : {b - 1, b, b + 1}) durations.push_back(d);
        for (uint64_t d = 1; d < 4096; ++d) durations.push_back(d);
        for (uint32_t k = 0; k < 63; ++k)
            for (const uint64_t d :
                 {(uint64_t{1} << k) - 1, uint64_t{1} << k, (uint64_t{1} << k) + 1})
                durations.push_back(d);
        for (int i = 0; i < 200000; ++i) durations.push_back(random() >> (random() % 64));
        size_t checked = 0, wrong = 0;
        for (const uint64_t d : durations) {
            if (d == 0 || d > bound_ns.back()) continue;  // the zero bucket; not placed
            ++checked;
            if (cell_lookup(d) != search(d)) {
                if (wrong == 0) UNSCOPED_INFO("first wrong duration " << d << " ns");
                ++wrong;
            }
        }
        CHECK(wrong == 0);
        // Most durations are in range: the comparison above is not vacuous.
        CHECK(checked > durations.size() / 2);
    }
}

TEST_CASE("native buckets: downscaling merges buckets exactly and keeps the count") {
    std::mt19937 random(24);
    std::uniform_int_distribution<int32_t> index_of(-300, 300);
    std::map<int32_t, uint64_t> counts;
    uint64_t total = 0;
    for (int i = 0; i < 400; ++i) {
        const int32_t index = index_of(random);
        counts[index] += static_cast<uint64_t>(i % 7 + 1);
        total += static_cast<uint64_t>(i % 7 + 1);
    }
    const NativeBuckets native = native_buckets(3, 5, counts, 20);
    CHECK(native.positive.size() <= 20);
    CHECK(native.schema < 3);
    CHECK(native.zero_count == 5);
    CHECK(native.zero_threshold == 0x1p-128);
    // Each fine bucket in the coarse bucket whose range holds it: (2^((j-1)/2^s'), 2^(j/2^s')]
    // contains (2^((i-1)/2^s), 2^(i/2^s)] iff j = ceil(i / 2^(s - s')).
    std::map<int32_t, uint64_t> expected;
    const double factor = std::ldexp(1.0, 3 - native.schema);
    for (const auto& [index, n] : counts)
        expected[static_cast<int32_t>(std::ceil(index / factor))] += n;
    CHECK(std::map<int32_t, uint64_t>(native.positive.begin(), native.positive.end()) == expected);
    uint64_t served = 0;
    for (const auto& [index, n] : native.positive) served += n;
    CHECK(served == total);
    // One schema coarser would have fit too? Then it went one step too far.
    std::map<int32_t, uint64_t> finer;
    const double finer_factor = factor / 2;
    for (const auto& [index, n] : counts)
        finer[static_cast<int32_t>(std::ceil(index / finer_factor))] += n;
    CHECK(finer.size() > 20);
    // Within the bound: the schema stays.
    CHECK(native_buckets(3, 0, {{-1, 1}, {4, 2}}, 20).schema == 3);
}

TEST_CASE("protobuf: native buckets beside the classic ones, as spans and deltas") {
    auto families = tcpstatesd::test::sample_families();
    tcpstatesd::Collection collection{families, {}};
    NativeBuckets native;
    native.schema = 3;
    native.zero_threshold = 0x1p-128;
    native.zero_count = 2;
    native.positive = {{-5, 1}, {-4, 3}, {0, 2}, {7, 5}};
    collection.extras[{2, 0}].native = native;
    const auto decoded =
        tcpstatesd::test::decode_delimited(tcpstatesd::protobuf_delimited(collection));
    REQUIRE(decoded.size() == 3);
    const dto::Histogram& h = decoded[2].metric(0).histogram();
    CHECK(h.schema() == 3);
    CHECK(h.zero_threshold() == 0x1p-128);
    CHECK(h.zero_count() == 2);
    // Runs -5..-4, 0, 7: offsets from the first index, then gaps of 3 and 6 buckets.
    REQUIRE(h.positive_span_size() == 3);
    CHECK(h.positive_span(0).offset() == -5);
    CHECK(h.positive_span(0).length() == 2);
    CHECK(h.positive_span(1).offset() == 3);
    CHECK(h.positive_span(1).length() == 1);
    CHECK(h.positive_span(2).offset() == 6);
    CHECK(h.positive_span(2).length() == 1);
    REQUIRE(h.positive_delta_size() == 4);
    CHECK(h.positive_delta(0) == 1);
    CHECK(h.positive_delta(1) == 2);
    CHECK(h.positive_delta(2) == -1);
    CHECK(h.positive_delta(3) == 3);
    CHECK(h.negative_span_size() == 0);
    // The count is the native buckets' (2 + 11), the classic buckets capped at it (the sample
    // family's classic count, 4, is less: unchanged).
    CHECK(h.sample_count() == 13);
    REQUIRE(h.bucket_size() == 2);
    CHECK(h.bucket(1).cumulative_count() == 2);

    // Fewer native observations than the classic buckets hold: the count and the classic
    // buckets are capped at them.
    native.zero_count = 0;
    native.positive = {{0, 1}};
    collection.extras[{2, 0}].native = native;
    const auto capped =
        tcpstatesd::test::decode_delimited(tcpstatesd::protobuf_delimited(collection));
    CHECK(capped[2].metric(0).histogram().sample_count() == 1);
    CHECK(capped[2].metric(0).histogram().bucket(1).cumulative_count() == 1);

    // No observation yet: one empty span, so that any Prometheus takes it for native.
    native.positive.clear();
    collection.extras[{2, 0}].native = native;
    const auto empty =
        tcpstatesd::test::decode_delimited(tcpstatesd::protobuf_delimited(collection));
    const dto::Histogram& e = empty[2].metric(0).histogram();
    REQUIRE(e.positive_span_size() == 1);
    CHECK(e.positive_span(0).offset() == 0);
    CHECK(e.positive_span(0).length() == 0);
    CHECK(e.positive_delta_size() == 0);
    CHECK(e.sample_count() == 0);
}

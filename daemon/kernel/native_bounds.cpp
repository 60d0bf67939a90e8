#include "kernel/native_bounds.hpp"

#include <gmpxx.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace tcpstatesd {

static_assert(TCPSTATES_NATIVE_MAX_BOUNDS <= UINT16_MAX, "cell positions are 16 bits");

namespace {

// floor(1e9 * 2^(index / n)), n = 2^schema (at schemas <= 0, n = 1 and the exponent is
// index * 2^-schema, whole): exactly, as the integer n-th root of floor(1e9^n * 2^exponent)
// (floor(y^(1/n)) = floor(floor(y)^(1/n)) for y >= 0: the root passes whole numbers only at
// n-th powers). Floating point cannot: at schema 8, 1e9 * 2^(5547/256) lies within 2^-12 of a
// whole number, closer than a long double resolves there. `billion_n` is 1e9^n.
uint64_t bound_ns(int32_t index, int32_t schema, const mpz_class& billion_n) {
    const unsigned long n = schema > 0 ? 1UL << schema : 1UL;
    const long exponent = schema > 0 ? index : static_cast<long>(index) << -schema;
    mpz_class value = billion_n;
    if (exponent >= 0)
        mpz_mul_2exp(value.get_mpz_t(), value.get_mpz_t(), static_cast<mp_bitcnt_t>(exponent));
    else
        mpz_fdiv_q_2exp(value.get_mpz_t(), value.get_mpz_t(), static_cast<mp_bitcnt_t>(-exponent));
    mpz_root(value.get_mpz_t(), value.get_mpz_t(), n);
    return mpz_get_ui(value.get_mpz_t());
}

}  // namespace

NativeBounds native_bounds(int32_t schema) {
    if (schema < TCPSTATES_NATIVE_MIN_SCHEMA || schema > TCPSTATES_NATIVE_MAX_SCHEMA)
        throw std::invalid_argument("native histogram schema " + std::to_string(schema) +
                                    " outside -4 .. 8");
    // The last bucket: the one ending at 2^TCPSTATES_NATIVE_TOP_LOG2 s, or at schemas < 0 the
    // one holding it (ending at most at 2^32 s, 4.3e18 ns).
    const int32_t top = schema >= 0 ? TCPSTATES_NATIVE_TOP_LOG2 << schema
                                    : (TCPSTATES_NATIVE_TOP_LOG2 + (1 << -schema) - 1) >> -schema;
    mpz_class billion_n;
    mpz_ui_pow_ui(billion_n.get_mpz_t(), 1000000000UL, schema > 0 ? 1UL << schema : 1UL);
    NativeBounds bounds;
    bounds.first_index = top;
    // Down to the bucket of 1 ns: the last whose bound reaches 1 (durations are whole
    // nanoseconds; schemas <= 0 reach below 1 ns in one bucket).
    for (int32_t index = top;; --index) {
        const uint64_t bound = bound_ns(index, schema, billion_n);
        if (bound < 1) break;
        bounds.bound_ns.push_back(bound);
        bounds.first_index = index;
    }
    std::reverse(bounds.bound_ns.begin(), bounds.bound_ns.end());
    if (bounds.bound_ns.size() > TCPSTATES_NATIVE_MAX_BOUNDS)
        throw std::logic_error("native bounds: " + std::to_string(bounds.bound_ns.size()) +
                               " bounds exceed TCPSTATES_NATIVE_MAX_BOUNDS");
    // Each cell's smallest duration c: the bucket of every duration of the cell is c's or the
    // next (the proof at tcpstates_native_cell). Cells past the top bound get the count: the
    // programs leave those durations out before.
    const uint32_t bits = static_cast<uint32_t>(std::max(schema + 1, 0));
    bounds.cell_bits = bits;
    bounds.cell_position.assign(TCPSTATES_NATIVE_CELLS, 0);
    for (uint32_t log2 = 0; log2 < 64; ++log2)
        for (uint64_t top_bits = 0; top_bits < (uint64_t{1} << bits); ++top_bits) {
            const uint64_t smallest = log2 >= bits
                                          ? (uint64_t{1} << log2) | (top_bits << (log2 - bits))
                                          : (uint64_t{1} << log2) | (top_bits >> (bits - log2));
            bounds.cell_position[(log2 << bits) | top_bits] = static_cast<uint16_t>(
                std::lower_bound(bounds.bound_ns.begin(), bounds.bound_ns.end(), smallest) -
                bounds.bound_ns.begin());
        }
    return bounds;
}

}  // namespace tcpstatesd

// The counts the programs keep, read from user space: the label tuples' counts, the labelled
// histograms and the native buckets, each in one of two tables of which the programs write one
// (bpf/maps.bpf.h); the unlabelled histograms; the transitions with an unknown start; the
// handshakes without an RTT.
//
// Swapping the tables is how user space takes counts out of the kernel without losing one: the
// spare table is installed, which returns once no program uses the old one any more (a
// map-in-map update waits for running programs), and the old table's counts are then final.
// The caller folds them into totals of its own, so that a count never goes down, and the old
// table, cleared, becomes the spare. Not thread-safe: the caller serializes (CountedMetrics).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/fd.hpp"
#include "tcpstates.h"

namespace tcpstatesd {

class BpfProgram;

struct TupleCounts {
    tcpstates_tuple_key key;
    tcpstates_tuple_counts counts;
};

struct LabelledHistogram {
    tcpstates_duration_key key;
    tcpstates_histogram histogram;
};

struct NativeBucket {
    tcpstates_native_key key;
    uint64_t count;
};

using UnknownStarts = std::array<uint64_t, static_cast<size_t>(TCPSTATES_UNKNOWN_START_SLOTS)>;
using PerFamily = std::array<uint64_t, 2>;  // [0]: IPv4, [1]: IPv6

class CountTables {
public:
    // Creates the spare tables (as large as the program's): call before the daemon drops its
    // capabilities, which creating a map needs.
    // The native tables are as large as the program's (BpfProgram::native_table_capacity()).
    CountTables(const BpfProgram& program, uint32_t tuple_capacity, uint32_t duration_capacity);

    uint32_t tuple_capacity() const { return tuple_capacity_; }

    // What the tables in use hold now.
    std::vector<TupleCounts> tuples() const;
    std::vector<LabelledHistogram> labelled_durations() const;
    std::vector<NativeBucket> native_buckets() const;
    // The unlabelled histograms of a bucket generation, by tcpstates_duration_slot() of
    // generation 0.
    std::vector<tcpstates_histogram> durations(uint32_t generation) const;
    // The unlabelled handshake RTT histograms of a bucket generation, [0]: IPv4, [1]: IPv6.
    std::array<tcpstates_histogram, 2> handshake_rtts(uint32_t generation) const;
    PerFamily handshake_rtt_unmeasured() const;
    UnknownStarts unknown_starts() const;

    // The swap, in three steps so that the caller can hold its own lock only where it must:
    // prepare() puts the overflow tuples in the spare tuple table, then the tuples given (those
    // whose sockets are still counted: their counts must move in the new table), and installs
    // the spares, waiting for the programs to leave the old tables; then, under the caller's
    // lock, retire() returns the old ones' final contents and makes the spares the tables in
    // use; then clear_retired() empties the old tables, which become the spares. Each throws
    // BpfError: a failed prepare() or retire() leaves the tables the caller reads as they were
    // (the next swap starts over), and the next prepare() completes a failed clear_retired().
    // A tuple without room (full, or no memory) is left out: the programs add it themselves.
    void prepare(const std::vector<tcpstates_tuple_key>& carried);
    struct Retired {
        std::vector<TupleCounts> tuples;
        std::vector<LabelledHistogram> durations;
        std::vector<NativeBucket> native;
    };
    Retired retire();
    // Adds tuples to the table in use (those the prepare() step could not know of yet).
    void carry(const std::vector<tcpstates_tuple_key>& carried);
    void clear_retired();
    // Zeroes the unlabelled histograms (durations, handshake RTTs) of a bucket generation no
    // program uses any more.
    void clear_durations(uint32_t generation);

private:
    const BpfProgram& program_;
    uint32_t tuple_capacity_;
    Fd tuple_tables_[2];
    Fd duration_tables_[2];
    Fd native_tables_[2];
    int live_ = 0;  // which of each pair the programs write
    // The spares hold the counts retire() returned last: clear_retired() has yet to succeed.
    bool retired_uncleared_ = false;
};

}  // namespace tcpstatesd

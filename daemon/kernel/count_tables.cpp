#include "kernel/count_tables.hpp"

#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kernel/bpf_maps.hpp"
#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

namespace {

template <typename Entry, typename Key, typename Value>
std::vector<Entry> entries_of(int map_fd, const char* name) {
    std::vector<Entry> out;
    for_each_entry(map_fd, name, sizeof(Key), sizeof(Value),
                   [&](const void* key, const void* value) {
                       Entry& entry = out.emplace_back();
                       std::memcpy(&entry, key, sizeof(Key));
                       std::memcpy(reinterpret_cast<unsigned char*>(&entry) + sizeof(Key), value,
                                   sizeof(Value));
                   });
    return out;
}

static_assert(offsetof(TupleCounts, counts) == sizeof(tcpstates_tuple_key));
static_assert(offsetof(LabelledHistogram, histogram) == sizeof(tcpstates_duration_key));
static_assert(offsetof(NativeBucket, count) == sizeof(tcpstates_native_key));

void install(int outer_fd, int table_fd, const char* what) {
    const uint32_t slot = 0;
    // Returns once no running program uses the table it replaces.
    if (bpf_map_update_elem(outer_fd, &slot, &table_fd, BPF_ANY) != 0)
        throw_bpf_error(std::string("installing the ") + what, errno);
}

void insert_zero_tuples(int table_fd, const std::vector<tcpstates_tuple_key>& keys) {
    const tcpstates_tuple_counts zero{};
    // A tuple without room (the table full, or the kernel short of memory) is left out: the
    // programs add it at its sockets' next move, or count the move as lost (gauge_lost).
    for (const tcpstates_tuple_key& key : keys)
        if (bpf_map_update_elem(table_fd, &key, &zero, BPF_NOEXIST) != 0 && errno != EEXIST &&
            errno != E2BIG && errno != ENOMEM)
            throw_bpf_error("carrying a tuple into the new tuple table", errno);
}

}  // namespace

CountTables::CountTables(const BpfProgram& program, uint32_t tuple_capacity,
                         uint32_t duration_capacity)
    : program_(program), tuple_capacity_(tuple_capacity) {
    tuple_tables_[0] = Fd(dup(program.first_tuple_table_fd()));
    duration_tables_[0] = Fd(dup(program.first_duration_table_fd()));
    native_tables_[0] = Fd(dup(program.first_native_table_fd()));
    if (!tuple_tables_[0] || !duration_tables_[0] || !native_tables_[0])
        throw_bpf_error("keeping the count tables' descriptors", errno);
    tuple_tables_[1] =
        create_hash_map("tuples", sizeof(tcpstates_tuple_key), sizeof(tcpstates_tuple_counts),
                        tuple_table_entries(tuple_capacity), program.preallocated());
    duration_tables_[1] =
        create_hash_map("durations", sizeof(tcpstates_duration_key), sizeof(tcpstates_histogram),
                        duration_capacity, program.preallocated());
    native_tables_[1] = create_hash_map("native", sizeof(tcpstates_native_key), sizeof(uint64_t),
                                        program.native_table_capacity(), program.preallocated());
}

std::vector<TupleCounts> CountTables::tuples() const {
    return entries_of<TupleCounts, tcpstates_tuple_key, tcpstates_tuple_counts>(
        tuple_tables_[live_].get(), "tuples");
}

std::vector<LabelledHistogram> CountTables::labelled_durations() const {
    return entries_of<LabelledHistogram, tcpstates_duration_key, tcpstates_histogram>(
        duration_tables_[live_].get(), "durations");
}

std::vector<NativeBucket> CountTables::native_buckets() const {
    return entries_of<NativeBucket, tcpstates_native_key, uint64_t>(native_tables_[live_].get(),
                                                                    "native buckets");
}

std::vector<tcpstates_histogram> CountTables::durations(uint32_t generation) const {
    std::vector<tcpstates_histogram> out(TCPSTATES_DURATION_SLOTS / 2);
    read_array(program_.durations_fd(), "durations", tcpstates_duration_slot(generation, 0, 0, 0),
               static_cast<uint32_t>(out.size()), out.data());
    return out;
}

std::array<tcpstates_histogram, 2> CountTables::handshake_rtts(uint32_t generation) const {
    std::array<tcpstates_histogram, 2> out{};  // [ipv6]
    read_array(program_.handshake_rtts_fd(), "handshake_rtts",
               tcpstates_handshake_rtt_slot(generation, 0), 2, out.data());
    return out;
}

PerFamily CountTables::handshake_rtt_unmeasured() const {
    PerFamily out{};
    read_array(program_.handshake_rtt_unmeasured_fd(), "handshake_rtt_unmeasured", 0, 2,
               out.data());
    return out;
}

UnknownStarts CountTables::unknown_starts() const {
    UnknownStarts out{};
    read_array(program_.unknown_starts_fd(), "unknown_starts", 0, static_cast<uint32_t>(out.size()),
               out.data());
    return out;
}

void CountTables::prepare(const std::vector<tcpstates_tuple_key>& carried) {
    const int spare = 1 - live_;
    // The counts left in by a failed clear_retired() were folded: they must not be again.
    if (retired_uncleared_) clear_retired();
    // Here, not when the table was cleared: the programs find them in every table they use
    // (bpf/counts.bpf.h), so a failed insert must stop the swap, and the carried tuples must
    // not take their room.
    add_overflow_tuples(tuple_tables_[spare].get());
    insert_zero_tuples(tuple_tables_[spare].get(), carried);
    install(program_.tuple_tables_fd(), tuple_tables_[spare].get(), "new tuple table");
    install(program_.duration_tables_fd(), duration_tables_[spare].get(), "new duration table");
    install(program_.native_tables_fd(), native_tables_[spare].get(), "new native table");
}

CountTables::Retired CountTables::retire() {
    // Read before the switch: if a read fails, the old tables stay the ones scrapes read, so
    // that no count goes down, and the next swap retires them.
    Retired retired{entries_of<TupleCounts, tcpstates_tuple_key, tcpstates_tuple_counts>(
                        tuple_tables_[live_].get(), "tuples"),
                    entries_of<LabelledHistogram, tcpstates_duration_key, tcpstates_histogram>(
                        duration_tables_[live_].get(), "durations"),
                    entries_of<NativeBucket, tcpstates_native_key, uint64_t>(
                        native_tables_[live_].get(), "native buckets")};
    live_ = 1 - live_;
    retired_uncleared_ = true;
    return retired;
}

void CountTables::carry(const std::vector<tcpstates_tuple_key>& carried) {
    insert_zero_tuples(tuple_tables_[live_].get(), carried);
}

void CountTables::clear_retired() {
    const int old = 1 - live_;
    clear_map(tuple_tables_[old].get(), "tuples", sizeof(tcpstates_tuple_key));
    clear_map(duration_tables_[old].get(), "durations", sizeof(tcpstates_duration_key));
    clear_map(native_tables_[old].get(), "native buckets", sizeof(tcpstates_native_key));
    retired_uncleared_ = false;
}

void CountTables::clear_durations(uint32_t generation) {
    const tcpstates_histogram zero{};
    for (uint32_t i = 0; i < TCPSTATES_DURATION_SLOTS / 2; ++i) {
        const uint32_t slot = tcpstates_duration_slot(generation, 0, 0, 0) + i;
        if (bpf_map_update_elem(program_.durations_fd(), &slot, &zero, BPF_ANY) != 0)
            throw_bpf_error("clearing the duration histograms", errno);
    }
    for (uint32_t ipv6 = 0; ipv6 < 2; ++ipv6) {
        const uint32_t slot = tcpstates_handshake_rtt_slot(generation, ipv6);
        if (bpf_map_update_elem(program_.handshake_rtts_fd(), &slot, &zero, BPF_ANY) != 0)
            throw_bpf_error("clearing the handshake RTT histograms", errno);
    }
}

}  // namespace tcpstatesd

// Creating and reading plain BPF maps from user space, reading what the kernel tells of a BPF
// object, and running iterators: what the count tables, the walk, the programs' counters and the
// recursion marks share. Each throws BpfError naming the map, the object or the iteration and
// the cause.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/fd.hpp"

struct bpf_link;

namespace tcpstatesd {

// Runs the iterator attached as `link` to its end (its programs write their results into maps;
// it prints nothing). `what` names the iteration in an error.
void run_iterator(bpf_link* link, const std::string& what);

// A BPF_MAP_TYPE_HASH, allocated as used or preallocated. Needs CAP_BPF: create before the
// daemon drops its capabilities. A failure's error says `failing` if given, else which map.
Fd create_hash_map(const char* name, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                   bool preallocated, const std::string& failing = {});

// Calls `each(key, value)` for every entry of a hash map, read in batches. Entries added or
// removed meanwhile may or may not be seen.
void for_each_entry(int map_fd, const char* name, uint32_t key_size, uint32_t value_size,
                    const std::function<void(const void* key, const void* value)>& each);

// The CPUs there may be: how many values a per-CPU map holds in a slot.
uint32_t possible_cpus();

// What the kernel tells of the program or map behind `fd` (Info: bpf_prog_info or
// bpf_map_info); `what` names the reading in the error.
template <typename Info>
Info object_info(int fd, const std::string& what);

// Reads slots first .. first + count - 1 of an array map into `values`, which has room for
// `count` of its values (for a per-CPU array, a slot's value is each possible CPU's, one after
// the other, each rounded up to 8 bytes): one system call, not one a slot.
void read_array(int map_fd, const char* name, uint32_t first, uint32_t count, void* values);

// Removes every entry of a hash map that no program writes (a table swapped out, or the walk's
// counts between walks).
void clear_map(int map_fd, const char* name, uint32_t key_size);

}  // namespace tcpstatesd

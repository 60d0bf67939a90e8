#include "kernel/bpf_maps.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

namespace {

// Entries per batch: the kernel copies a bucket whole, so a batch must hold the largest bucket
// (ENOSPC otherwise: the batch is doubled).
constexpr uint32_t kBatchEntries = 256;

}  // namespace

void run_iterator(bpf_link* link, const std::string& what) {
    const Fd iteration(bpf_iter_create(bpf_link__fd(link)));
    if (!iteration) throw_bpf_error("starting: " + what, errno);
    char buffer[4096];
    for (;;) {
        const ssize_t n = read(iteration.get(), buffer, sizeof buffer);
        if (n == 0) return;
        // EAGAIN: the kernel pauses a read that visited a million sockets without output;
        // reading again goes on from there.
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw_bpf_error(what, errno);
    }
}

Fd create_hash_map(const char* name, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                   bool preallocated, const std::string& failing) {
    LIBBPF_OPTS(bpf_map_create_opts, options);
    options.map_flags = preallocated ? 0 : BPF_F_NO_PREALLOC;
    Fd map(bpf_map_create(BPF_MAP_TYPE_HASH, name, key_size, value_size, max_entries, &options));
    if (!map)
        throw_bpf_error(failing.empty() ? std::string("creating the BPF map ") + name + " (" +
                                              std::to_string(max_entries) + " entries)"
                                        : failing,
                        errno);
    return map;
}

void for_each_entry(int map_fd, const char* name, uint32_t key_size, uint32_t value_size,
                    const std::function<void(const void* key, const void* value)>& each) {
    uint32_t batch = kBatchEntries;
    std::vector<unsigned char> keys, values;
    // The batch position: an opaque bucket cursor of the kernel's (4 bytes for a hash map).
    uint64_t in = 0, out = 0;
    bool first = true;
    for (;;) {
        keys.resize(size_t(batch) * key_size);
        values.resize(size_t(batch) * value_size);
        uint32_t count = batch;
        LIBBPF_OPTS(bpf_map_batch_opts, options);
        const int err = bpf_map_lookup_batch(map_fd, first ? nullptr : &in, &out, keys.data(),
                                             values.data(), &count, &options);
        const int code = err ? errno : 0;
        if (code == ENOSPC && count == 0) {
            batch *= 2;  // a bucket larger than the batch
            continue;
        }
        if (code != 0 && code != ENOENT)
            throw_bpf_error(std::string("reading the BPF map ") + name, code);
        for (uint32_t i = 0; i < count; ++i)
            each(keys.data() + size_t(i) * key_size, values.data() + size_t(i) * value_size);
        if (code == ENOENT) return;  // the last batch
        in = out;
        first = false;
    }
}

uint32_t possible_cpus() {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) throw BpfError("counting the possible CPUs: " + std::string(strerror(-cpus)));
    return static_cast<uint32_t>(cpus);
}

template <typename Info>
Info object_info(int fd, const std::string& what) {
    Info info{};
    uint32_t size = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &size) != 0)
        throw BpfError(what + ": " + strerror(errno));
    return info;
}

template bpf_prog_info object_info<bpf_prog_info>(int fd, const std::string& what);
template bpf_map_info object_info<bpf_map_info>(int fd, const std::string& what);

void read_array(int map_fd, const char* name, uint32_t first, uint32_t count, void* values) {
    std::vector<uint32_t> keys(count);
    // An array's batch starts after the key given (none: at 0); ENOENT: it reached the end.
    uint32_t previous = first - 1, next = 0, read = count;
    LIBBPF_OPTS(bpf_map_batch_opts, options);
    if (bpf_map_lookup_batch(map_fd, first == 0 ? nullptr : &previous, &next, keys.data(), values,
                             &read, &options) != 0 &&
        errno != ENOENT)
        throw_bpf_error(std::string("reading the BPF map ") + name, errno);
    if (read != count || keys.front() != first)
        throw BpfError(std::string("reading the BPF map ") + name + ": the kernel returned " +
                       std::to_string(read) + " slots from " + std::to_string(keys.front()) +
                       ", not " + std::to_string(count) + " from " + std::to_string(first));
}

void clear_map(int map_fd, const char* name, uint32_t key_size) {
    // The keys first, then the deletions: nothing adds entries meanwhile, and a walk of the
    // keys is linear where restarting it after each deletion would not be.
    std::vector<unsigned char> keys;
    std::vector<unsigned char> key(key_size);
    const void* previous = nullptr;
    while (bpf_map_get_next_key(map_fd, previous, key.data()) == 0) {
        keys.insert(keys.end(), key.begin(), key.end());
        previous = keys.data() + keys.size() - key_size;
    }
    for (size_t at = 0; at < keys.size(); at += key_size)
        if (bpf_map_delete_elem(map_fd, keys.data() + at) != 0 && errno != ENOENT)
            throw_bpf_error(std::string("clearing the BPF map ") + name, errno);
}

}  // namespace tcpstatesd

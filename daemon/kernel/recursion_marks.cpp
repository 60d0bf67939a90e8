#include "kernel/recursion_marks.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernel/bpf_maps.hpp"
#include "kernel/bpf_program.hpp"
#include "recursion_marks.skel.h"

namespace tcpstatesd {

namespace {

// Not throw_bpf_error(): its remedies are the daemon's programs', not this finder's.
[[noreturn]] void fail(const std::string& what, int err) {
    throw BpfError(what + ": " + std::strerror(err < 0 ? -err : err));
}

// The kernel's id of a program's or a map's fd (Info: bpf_prog_info or bpf_map_info).
template <typename Info>
uint32_t id_of(int fd) {
    return object_info<Info>(fd, "reading the id of the recursion marks' programs and map").id;
}

// Runs one of the finder's iterators to its end.
void run(bpf_program* iterator) {
    const std::unique_ptr<bpf_link, decltype(&bpf_link__destroy)> link(
        bpf_program__attach_iter(iterator, nullptr), bpf_link__destroy);
    const std::string what = std::string("running the iterator ") + bpf_program__name(iterator);
    if (!link) fail(what, -errno);
    run_iterator(link.get(), what);
}

}  // namespace

void install_recursion_marks(int first_transition_fd, int first_destroy_fd, int marks_fd) {
    const uint32_t cpus = possible_cpus();
    const std::unique_ptr<recursion_marks_bpf, decltype(&recursion_marks_bpf__destroy)> finder(
        recursion_marks_bpf__open(), recursion_marks_bpf__destroy);
    if (!finder) fail("opening the recursion marks' finder", -errno);
    if (int err = bpf_map__reuse_fd(finder->maps.recursion_marks, marks_fd))
        fail("giving the recursion marks' finder the daemon's map", err);
    if (int err = recursion_marks_bpf__load(finder.get()))
        fail("loading the recursion marks' finder (needs the kernel's BTF, Linux >= 5.19)", err);
    auto& found = *finder->bss;
    found.first_program_ids[TCPSTATES_FIRST_TRANSITION_PROGRAM] =
        id_of<bpf_prog_info>(first_transition_fd);
    found.first_program_ids[TCPSTATES_FIRST_DESTROY_PROGRAM] =
        id_of<bpf_prog_info>(first_destroy_fd);
    found.marks_map_id = id_of<bpf_map_info>(marks_fd);
    found.possible_cpus = cpus;
    run(finder->progs.find_first_programs);
    run(finder->progs.find_cpu_offsets);
    if (!found.first_program_active[TCPSTATES_FIRST_TRANSITION_PROGRAM] ||
        !found.first_program_active[TCPSTATES_FIRST_DESTROY_PROGRAM] || !found.marks_percpu_pointer)
        throw BpfError("finding the recursion marks: the iterators found no program or map");

    // Each CPU's value of the map holds its own address now: less the map's per-CPU pointer,
    // that CPU's offset, which turns each program's per-CPU pointer into its mark there.
    const uint32_t address_key = 0;
    std::vector<uint64_t> own_addresses(cpus);
    if (bpf_map_lookup_elem(marks_fd, &address_key, own_addresses.data()) != 0)
        fail("reading the CPUs' offsets", -errno);
    for (uint32_t first = 0; first < TCPSTATES_FIRST_PROGRAMS; ++first) {
        std::vector<uint64_t> on_cpu(cpus);
        for (size_t cpu = 0; cpu < on_cpu.size(); ++cpu)
            on_cpu[cpu] = found.first_program_active[first] +
                          (own_addresses[cpu] - found.marks_percpu_pointer);
        if (bpf_map_update_elem(marks_fd, &first, on_cpu.data(), BPF_ANY) != 0)
            fail("writing the recursion marks", -errno);
    }
}

}  // namespace tcpstatesd

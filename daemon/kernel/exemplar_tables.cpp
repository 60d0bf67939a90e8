#include "kernel/exemplar_tables.hpp"

#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kernel/bpf_maps.hpp"
#include "kernel/bpf_program.hpp"

namespace tcpstatesd {

ExemplarTables::ExemplarTables(BpfProgram& program, uint32_t capacity) : program_(program) {
    tables_[0] = Fd(dup(program.first_exemplar_table_fd()));
    if (!tables_[0]) throw_bpf_error("keeping the exemplar table's descriptor", errno);
    tables_[1] = create_hash_map("exemplars", sizeof(tcpstates_exemplar_key),
                                 sizeof(tcpstates_exemplar), capacity, program.preallocated());
}

std::vector<ExemplarCandidate> ExemplarTables::take() {
    tcpstates_exemplar_key first{};
    if (bpf_map_get_next_key(tables_[live_].get(), nullptr, &first) != 0) {
        if (errno == ENOENT) return {};
        throw_bpf_error("reading the exemplar table", errno);
    }
    const int old = live_;
    const uint32_t slot = 0;
    const int spare = tables_[1 - old].get();
    // Returns once no running program uses the table it replaces.
    if (bpf_map_update_elem(program_.exemplar_tables_fd(), &slot, &spare, BPF_ANY) != 0)
        throw_bpf_error("installing the new exemplar table", errno);
    program_.exemplar_tables_swapped();
    live_ = 1 - old;
    std::vector<ExemplarCandidate> out;
    for_each_entry(tables_[old].get(), "exemplars", sizeof(tcpstates_exemplar_key),
                   sizeof(tcpstates_exemplar), [&](const void* key, const void* value) {
                       ExemplarCandidate& candidate = out.emplace_back();
                       std::memcpy(&candidate.key, key, sizeof candidate.key);
                       std::memcpy(&candidate.exemplar, value, sizeof candidate.exemplar);
                   });
    clear_map(tables_[old].get(), "exemplars", sizeof(tcpstates_exemplar_key));
    return out;
}

}  // namespace tcpstatesd

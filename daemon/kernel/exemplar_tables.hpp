// The exemplar candidates the programs keep (bpf/exemplars.bpf.h), read from user space: two
// tables of which the programs write one. take() installs the spare, which returns once no
// program uses the old table any more (a map-in-map update waits for running programs), reads
// the old one's entries, final then, and clears it. Not thread-safe: one caller (the upkeep).
#pragma once

#include <cstdint>
#include <vector>

#include "common/fd.hpp"
#include "tcpstates.h"

namespace tcpstatesd {

class BpfProgram;

struct ExemplarCandidate {
    tcpstates_exemplar_key key;
    tcpstates_exemplar exemplar;
};

class ExemplarTables {
public:
    // Creates the spare table (as large as the program's): call before the daemon drops its
    // capabilities, which creating a map needs.
    ExemplarTables(BpfProgram& program, uint32_t capacity);

    // The candidates kept since the last call, one per series and CPU. Without a swap (no wait
    // for the programs) when the table in use is empty.
    std::vector<ExemplarCandidate> take();

private:
    BpfProgram& program_;
    Fd tables_[2];
    int live_ = 0;  // which of the pair the programs write
};

}  // namespace tcpstatesd

// The walk of the network namespace's TCP sockets (bpf/walk.bpf.h): at start it records the
// sockets older than the daemon (so the programs count them from then on), and in the background
// it corrects records a missed transition left wrong and counts what makes no transition the
// programs see: timewait and request sockets, and full sockets the record table had no room
// for; and the oldest recorded full socket in each state. One walk at a time, from one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "tcpstates.h"

namespace tcpstatesd {

class BpfProgram;

// What one walk found besides the full sockets it recorded.
struct SocketWalk {
    struct Count {
        tcpstates_walk_key key;  // family, state (as ss reports it), service port
        uint64_t sockets;
    };
    std::vector<Count> walked;  // timewait, request and unrecorded full sockets
    // The oldest recorded full socket per family, state and service port (not LISTEN).
    struct Oldest {
        tcpstates_walk_key key;
        uint64_t since_ns;       // CLOCK_MONOTONIC: the earliest entry time
        uint32_t start_unknown;  // sockets of the key whose entry time is a lower bound
    };
    std::vector<Oldest> oldest;
    tcpstates_walk_totals totals;
    double seconds = 0;      // how long it took
    double cpu_seconds = 0;  // the CPU time it took this thread (kernel and user space)
};

// Walks now, then sweeps the records of sockets no longer there. Throws BpfError. Needs
// program.can_walk_sockets().
SocketWalk walk_sockets(BpfProgram& program);

}  // namespace tcpstatesd

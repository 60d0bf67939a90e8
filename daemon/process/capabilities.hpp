// Least privilege once running. Capabilities are needed to load and attach the program (and to
// bind a port below 1024); everything after that works on fds the daemon already holds: map
// reads and updates (filters on reload, counters, the socket table), program info, the ring
// or perf buffer, the listening sockets. docs/operations.md ("Privileges") records the
// experiment.
#pragma once

#include <cstdint>
#include <optional>

namespace tcpstatesd {

// The calling thread's effective capabilities (bit N set: capability N), or nothing when
// capget fails.
std::optional<std::uint64_t> effective_capabilities();

// Sets no_new_privs, empties the effective, permitted, inheritable and ambient sets and, where
// the process may change it (CAP_SETPCAP, as when started by root), the bounding set; a
// systemd unit's bounding set is already its CapabilityBoundingSet=. Capabilities belong to
// threads: call it while the calling thread is the only one, so that later threads inherit
// the empty sets. Throws std::system_error naming the call.
void drop_capabilities();

}  // namespace tcpstatesd

// The walk of the network namespace's TCP sockets (bpf/walk.bpf.h): at start it records the
// sockets older than the daemon (so the programs count them from then on), and in the background
// it corrects records a missed transition left wrong and counts what makes no transition the
// programs see: timewait and request sockets, and full sockets the record table had no room
// for; and the oldest recorded full socket in each state. One walk at a time, from one thread.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
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
    // totals.listening_ports: the ports listened on in the walked namespace, and those the
    // programs saw listen() on in any other (containers) and not closed since: a port in use
    // there is not gone (labels/tuple_labels.hpp), though the walk cannot see it.
    tcpstates_walk_totals totals;

    // By family and service port (0: none).
    struct PortKey {
        uint8_t ipv6;
        uint16_t port;
        // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 on a defaulted <=>
        auto operator<=>(const PortKey&) const = default;
    };
    // The listeners' accept queues summed (bpf/queues.bpf.h).
    std::map<PortKey, tcpstates_listen_queue> listen_queues;
    // The listeners' drops since the daemon started following them: running totals.
    std::map<PortKey, uint64_t> listen_drops;
    // By family and destination port: the most ephemeral ports in use towards one address.
    std::map<PortKey, uint64_t> busiest_destinations;
    // net.ipv4.ip_local_port_range's size, as read before the walk; 0 if it could not be read
    // (then nothing is in busiest_destinations).
    uint32_t ephemeral_ports = 0;
    tcpstates_queue_walk_totals queue_totals{};
    // What the walk listed for the next one to sweep, if it read the record table.
    struct RecordListing {
        // Destroyed sockets' entries in the table, which the next walk deletes (at most
        // TCPSTATES_MAX_DESTROYED_RECORDS) unless new sockets take them over first.
        uint64_t destroyed_records = 0;
        // Whether every entry to sweep found room in the lists (else the rest waits).
        bool complete = true;
    };
    std::optional<RecordListing> listing;
    double seconds = 0;      // how long it took
    double cpu_seconds = 0;  // the CPU time it took this thread (kernel and user space)
};

// Whether a walk reads the whole record table afterwards, to list what the next walk sweeps: a
// read of every bucket (socket_table_size of them), the larger part of a walk of few sockets.
enum class SweepListing { read_record_table, skip };

// Walks now, sweeps what the last listing listed, then lists if asked. Throws BpfError. Needs
// program.can_walk_sockets().
SocketWalk walk_sockets(BpfProgram& program, SweepListing listing);

}  // namespace tcpstatesd

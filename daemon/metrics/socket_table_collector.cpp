#include "metrics/socket_table_collector.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <string>

#include "kernel/tcp_state.hpp"
#include "metrics/metric_family.hpp"

namespace tcpstatesd {

namespace {

// States a full socket can be seen in (TIME_WAIT and NEW_SYN_RECV live in other objects,
// CLOSE sockets leave the table).
constexpr unsigned kTrackedStates[] = {
    TCPSTATES_ESTABLISHED, TCPSTATES_SYN_SENT,  TCPSTATES_SYN_RECV,
    TCPSTATES_FIN_WAIT1,   TCPSTATES_FIN_WAIT2, TCPSTATES_CLOSE_WAIT,
    TCPSTATES_LAST_ACK,    TCPSTATES_LISTEN,    TCPSTATES_CLOSING,
};

bool allowed(const std::vector<uint16_t>& ports, uint16_t port) {
    return ports.empty() || std::binary_search(ports.begin(), ports.end(), port);
}

}  // namespace

SocketTableCollector::SocketTableCollector(const BpfProgram& program) : program_(program) {}

std::vector<prometheus::MetricFamily> SocketTableCollector::Collect() const {
    using prometheus::MetricType;
    const EventFilters filters = program_.filters();

    // sockets[family index][state]
    std::array<std::array<uint64_t, TCPSTATES_MAX_STATE + 1>, 2> sockets{};
    const size_t entries = program_.for_each_socket([&](const tcpstates_socket& s) {
        if (s.state > TCPSTATES_MAX_STATE || (s.family != AF_INET && s.family != AF_INET6)) return;
        if (!allowed(filters.local_ports, s.lport) || !allowed(filters.remote_ports, s.rport))
            return;
        ++sockets[s.family == AF_INET6 ? 1 : 0][s.state];
    });
    const KernelCounters kernel = program_.read_counters();

    std::vector<prometheus::MetricFamily> out;
    prometheus::MetricFamily gauge = metric_family(
        "tcpstates_sockets",
        "TCP sockets currently in each state, as tracked by the socket table (sockets seen "
        "changing state since the daemon started, within the configured filters).",
        MetricType::Gauge);
    for (unsigned f = 0; f < 2; ++f) {
        const unsigned af = f == 1 ? AF_INET6 : AF_INET;
        if (filters.family != 0 && filters.family != static_cast<int>(af)) continue;
        for (unsigned state = 1; state <= TCPSTATES_MAX_STATE; ++state) {
            const bool tracked = std::find(std::begin(kTrackedStates), std::end(kTrackedStates),
                                           state) != std::end(kTrackedStates);
            if (!tracked && sockets[f][state] == 0) continue;
            add_sample(gauge,
                       {{"family", std::string(family_name(af))},
                        {"state", std::string(tcp_state_name(state))}},
                       static_cast<double>(sockets[f][state]));
        }
    }
    out.push_back(std::move(gauge));

    out.push_back(
        single_sample("tcpstatesd_socket_table_entries",
                      "Sockets in the kernel socket table (all tracked sockets, before filters).",
                      MetricType::Gauge, static_cast<double>(entries)));
    out.push_back(single_sample("tcpstatesd_socket_table_capacity",
                                "Size of the kernel socket table (events.socket_table_size).",
                                MetricType::Gauge, program_.socket_table_capacity()));
    {
        // Every insert leaves by a CLOSE, by eviction, or is still there.
        const uint64_t inserted = kernel[TCPSTATES_COUNTER_TABLE_INSERT];
        const uint64_t removed = kernel[TCPSTATES_COUNTER_TABLE_DELETE] + entries;
        std::lock_guard lock(mutex_);
        if (inserted > removed) evictions_ = std::max(evictions_, inserted - removed);
        out.push_back(
            single_sample("tcpstatesd_socket_table_evictions_total",
                          "Sockets the full LRU socket table dropped to make room; their next "
                          "transition has an unknown start.",
                          MetricType::Counter, static_cast<double>(evictions_)));
    }
    out.push_back(single_sample(
        "tcpstatesd_socket_table_insert_failures_total",
        "Sockets the socket table refused to store (not tracked).", MetricType::Counter,
        static_cast<double>(kernel[TCPSTATES_COUNTER_TABLE_INSERT_FAILED])));
    out.push_back(single_sample(
        "tcpstatesd_socket_table_stale_entries_total",
        "Table entries found in another state than the transition's old state "
        "(a CLOSE was missed and the address reused); treated as unknown start.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_TABLE_STALE])));

    return out;
}

}  // namespace tcpstatesd

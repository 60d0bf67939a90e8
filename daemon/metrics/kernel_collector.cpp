#include "metrics/kernel_collector.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <string>

#include "kernel/tcp_state.hpp"

namespace tcpstatesd {

namespace {

// States a full socket can be seen in (TIME_WAIT and NEW_SYN_RECV live in other objects,
// CLOSE sockets leave the table).
constexpr unsigned kTrackedStates[] = {1, 2, 3, 4, 5, 8, 9, 10, 11};

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type) {
    prometheus::MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    return f;
}

prometheus::MetricFamily single(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
    prometheus::MetricFamily f = family(name, help, type);
    prometheus::ClientMetric m;
    if (type == prometheus::MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    f.metric.push_back(std::move(m));
    return f;
}

bool allowed(const std::vector<uint16_t>& ports, uint16_t port) {
    return ports.empty() || std::binary_search(ports.begin(), ports.end(), port);
}

}  // namespace

std::array<LossCount, 5> losses_by_reason(const KernelCounters& kernel, uint64_t recursion_misses,
                                          const UserSpaceLosses& user) {
    return {{
        {"recursion", recursion_misses},
        {"ringbuf_full", kernel[TCPSTATES_COUNTER_RINGBUF_FULL]},
        {"perfbuf_full", user.perf_buffer_lost.load(std::memory_order_relaxed)},
        {"perfbuf_error", kernel[TCPSTATES_COUNTER_PERFBUF_ERROR]},
        {"malformed", user.malformed.load(std::memory_order_relaxed)},
    }};
}

KernelCollector::KernelCollector(const BpfProgram& program, const UserSpaceLosses& losses)
    : program_(program), losses_(losses), filters_(program.filters()) {
    std::sort(filters_.local_ports.begin(), filters_.local_ports.end());
    std::sort(filters_.remote_ports.begin(), filters_.remote_ports.end());
}

void KernelCollector::set_filters(const EventFilters& filters) {
    EventFilters sorted = filters;
    std::sort(sorted.local_ports.begin(), sorted.local_ports.end());
    std::sort(sorted.remote_ports.begin(), sorted.remote_ports.end());
    std::lock_guard lock(mutex_);
    filters_ = std::move(sorted);
}

std::vector<prometheus::MetricFamily> KernelCollector::Collect() const {
    using prometheus::MetricType;
    EventFilters filters;
    {
        std::lock_guard lock(mutex_);
        filters = filters_;
    }

    // sockets[family index][state]
    std::array<std::array<uint64_t, kMaxTcpState + 1>, 2> sockets{};
    const size_t entries = program_.for_each_socket([&](const tcpstates_socket& s) {
        if (s.state > kMaxTcpState || (s.family != AF_INET && s.family != AF_INET6)) return;
        if (!allowed(filters.local_ports, s.lport) || !allowed(filters.remote_ports, s.rport))
            return;
        ++sockets[s.family == AF_INET6 ? 1 : 0][s.state];
    });
    const KernelCounters kernel = program_.read_counters();

    std::vector<prometheus::MetricFamily> out;
    prometheus::MetricFamily gauge =
        family("tcpstates_sockets",
               "TCP sockets currently in each state, as tracked by the socket table (sockets seen "
               "changing state since the daemon started, within the configured filters).",
               MetricType::Gauge);
    for (unsigned f = 0; f < 2; ++f) {
        const unsigned af = f == 1 ? AF_INET6 : AF_INET;
        if (filters.family != 0 && filters.family != static_cast<int>(af)) continue;
        for (unsigned state = 1; state <= kMaxTcpState; ++state) {
            const bool tracked = std::find(std::begin(kTrackedStates), std::end(kTrackedStates),
                                           state) != std::end(kTrackedStates);
            if (!tracked && sockets[f][state] == 0) continue;
            prometheus::ClientMetric m;
            m.label = {{"family", std::string(family_name(af))},
                       {"state", std::string(tcp_state_name(state))}};
            m.gauge.value = static_cast<double>(sockets[f][state]);
            gauge.metric.push_back(std::move(m));
        }
    }
    out.push_back(std::move(gauge));

    out.push_back(
        single("tcpstatesd_socket_table_entries",
               "Sockets in the kernel socket table (all tracked sockets, before filters).",
               MetricType::Gauge, static_cast<double>(entries)));
    out.push_back(single("tcpstatesd_socket_table_capacity",
                         "Size of the kernel socket table (events.socket_table_size).",
                         MetricType::Gauge, program_.socket_table_capacity()));
    {
        // Every insert leaves by a CLOSE, by eviction, or is still there.
        const uint64_t inserted = kernel[TCPSTATES_COUNTER_TABLE_INSERT];
        const uint64_t removed = kernel[TCPSTATES_COUNTER_TABLE_DELETE] + entries;
        std::lock_guard lock(mutex_);
        if (inserted > removed) evictions_ = std::max(evictions_, inserted - removed);
        out.push_back(single("tcpstatesd_socket_table_evictions_total",
                             "Sockets the full LRU socket table dropped to make room; their next "
                             "transition has an unknown start.",
                             MetricType::Counter, static_cast<double>(evictions_)));
    }
    out.push_back(single("tcpstatesd_socket_table_insert_failures_total",
                         "Sockets the socket table refused to store (not tracked).",
                         MetricType::Counter,
                         static_cast<double>(kernel[TCPSTATES_COUNTER_TABLE_INSERT_FAILED])));
    out.push_back(single("tcpstatesd_socket_table_stale_entries_total",
                         "Table entries found in another state than the transition's old state "
                         "(a CLOSE was missed and the address reused); treated as unknown start.",
                         MetricType::Counter,
                         static_cast<double>(kernel[TCPSTATES_COUNTER_TABLE_STALE])));

    prometheus::MetricFamily lost = family(
        "tcpstatesd_events_lost_total",
        "Transition events that never reached the aggregator, by reason.", MetricType::Counter);
    for (const auto& [reason, count] :
         losses_by_reason(kernel, program_.recursion_misses(), losses_)) {
        prometheus::ClientMetric m;
        m.label = {{"reason", reason}};
        m.counter.value = static_cast<double>(count);
        lost.metric.push_back(std::move(m));
    }
    out.push_back(std::move(lost));
    return out;
}

}  // namespace tcpstatesd

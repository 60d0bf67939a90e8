#include "metrics/socket_state_collector.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <chrono>
#include <string>

#include "kernel/tcp_state.hpp"
#include "metrics/metric_family.hpp"

namespace tcpstatesd {

namespace {

// The states `ss -tan` reports a socket in, each exported for both families even at 0. CLOSE
// sockets are forgotten; request sockets (NEW_SYN_RECV) are reported as SYN_RECV, as ss does.
constexpr unsigned kSocketStates[] = {
    TCPSTATES_ESTABLISHED, TCPSTATES_SYN_SENT,  TCPSTATES_SYN_RECV,   TCPSTATES_FIN_WAIT1,
    TCPSTATES_FIN_WAIT2,   TCPSTATES_TIME_WAIT, TCPSTATES_CLOSE_WAIT, TCPSTATES_LAST_ACK,
    TCPSTATES_LISTEN,      TCPSTATES_CLOSING,
};

}  // namespace

SocketStateCollector::SocketStateCollector(const BpfProgram& program) : program_(program) {
    if (!program_.can_walk_sockets()) return;
    const auto start = std::chrono::steady_clock::now();
    startup_sockets_ = static_cast<uint64_t>(total_sockets(program_.walk_sockets()));
    startup_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<prometheus::MetricFamily> SocketStateCollector::Collect() const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    SocketCounts sockets = program_.socket_counts();
    bool complete = true;
    if (program_.can_walk_sockets()) {
        try {
            const SocketCounts walked = program_.walk_sockets();
            for (int ipv6 = 0; ipv6 < 2; ++ipv6)
                for (unsigned state : kSocketStates) sockets[ipv6][state] += walked[ipv6][state];
        } catch (const BpfError& e) {
            // No gauge rather than one without this namespace's sockets.
            complete = false;
            walk_failures_.fetch_add(1, std::memory_order_relaxed);
            spdlog::warn("{}; tcpstates_sockets left out of this scrape", e.what());
        }
    }
    if (complete) {
        prometheus::MetricFamily gauge = metric_family(
            "tcpstates_sockets",
            "TCP sockets now in each state, as ss -tan counts them: every socket of the daemon's "
            "network namespace (counted at scrape, TIME_WAIT and request sockets included), and "
            "those of other namespaces seen changing state since the start. Not limited by the "
            "filters.",
            MetricType::Gauge);
        for (int ipv6 = 0; ipv6 < 2; ++ipv6)
            for (unsigned state : kSocketStates)
                add_sample(gauge,
                           {{"family", std::string(family_name(ipv6 ? AF_INET6 : AF_INET))},
                            {"state", std::string(tcp_state_name(state))}},
                           static_cast<double>(sockets[ipv6][state]));
        out.push_back(std::move(gauge));
    }

    const KernelCounters kernel = program_.read_counters();
    out.push_back(single_sample(
        "tcpstatesd_socket_state_failures_total",
        "Times a socket's state could not be stored at a transition (out of memory, or the "
        "socket table of the raw tracepoint full): its next transition has an unknown start, "
        "and a socket of another network namespace (or any, with the raw tracepoint) is not "
        "counted in tcpstates_sockets until it is stored.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_STATE_FAILED])));
    out.push_back(single_sample(
        "tcpstatesd_socket_state_mismatches_total",
        "Transitions whose old state was not the socket's stored state (a transition was "
        "missed); treated as unknown start.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_STATE_MISMATCH])));
    out.push_back(
        single_sample("tcpstatesd_socket_walk_failures_total",
                      "Scrape-time walks of the sockets that failed (logged); those scrapes "
                      "have no tcpstates_sockets.",
                      MetricType::Counter, static_cast<double>(walk_failures_.load())));
    out.push_back(single_sample("tcpstatesd_startup_snapshot_sockets",
                                "Sockets of the daemon's network namespace found at start.",
                                MetricType::Gauge, static_cast<double>(startup_sockets_)));
    out.push_back(single_sample("tcpstatesd_startup_snapshot_duration_seconds",
                                "How long the start-up walk of the sockets took.",
                                MetricType::Gauge, startup_seconds_));
    if (program_.socket_table_capacity() != 0)
        out.push_back(single_sample(
            "tcpstatesd_socket_table_capacity",
            "Sockets the raw tracepoint's socket table holds (events.socket_table_size).",
            MetricType::Gauge, program_.socket_table_capacity()));
    return out;
}

}  // namespace tcpstatesd

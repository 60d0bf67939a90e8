#include "metrics/socket_state_collector.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <tuple>

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

SocketStateCollector::SocketStateCollector(const BpfProgram& program, ListeningPorts& listening,
                                           SocketLabels& labels, SeriesBudget& budget)
    : program_(program), listening_(listening), labels_(labels), budget_(budget) {
    if (!program_.can_walk_sockets()) return;
    const auto start = std::chrono::steady_clock::now();
    const SocketWalk walk = program_.walk_sockets();
    listening_.walked(walk.listening_ports);
    startup_sockets_ = static_cast<uint64_t>(total_sockets(walk.sockets));
    startup_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

namespace {

constexpr const char* kGaugeHelp =
    "TCP sockets now in each state, as ss -tan counts them: every socket of the daemon's network "
    "namespace (counted at scrape, TIME_WAIT and request sockets included), and those of other "
    "namespaces seen changing state since the start. Not limited by the filters.";

// CLOSE (bound, not yet listening or connecting) has no line in ss -tan, nor in the gauge.
bool in_gauge(unsigned state) {
    return std::find(std::begin(kSocketStates), std::end(kSocketStates), state) !=
           std::end(kSocketStates);
}

struct GaugeKey {
    int ipv6;
    unsigned state;
    uint32_t port, cgroup;
    bool operator<(const GaugeKey& other) const {
        return std::tie(ipv6, state, port, cgroup) <
               std::tie(other.ipv6, other.state, other.port, other.cgroup);
    }
};

// Keeps as many labelled label sets as the series budget has room for; folds the others into
// their family and state's "other" one, and counts them.
void fold_over_budget(std::map<GaugeKey, int64_t>& counts, SeriesBudget& budget) {
    uint64_t available = budget.available(), folded = 0;
    for (auto it = counts.begin(); it != counts.end();) {
        if (it->first.port == 0 && it->first.cgroup == 0) {
            ++it;
        } else if (available > 0) {
            --available;
            ++it;
        } else {
            counts[{it->first.ipv6, it->first.state, 0, 0}] += it->second;
            ++folded;
            it = counts.erase(it);
        }
    }
    if (folded) budget.overflowed(LabelledMetric::Sockets, folded);
}

}  // namespace

prometheus::MetricFamily SocketStateCollector::gauge(bool port, bool cgroup) const {
    using prometheus::MetricType;
    prometheus::MetricFamily family =
        metric_family(metric_name(LabelledMetric::Sockets).data(), kGaugeHelp, MetricType::Gauge);
    std::map<GaugeKey, int64_t> counts;
    SocketLabels::WalkedLabels names;
    names.port_names = {"other"};
    names.cgroup_names = {"other"};
    // Counted without labels: other network namespaces' sockets (the programs count them; the
    // walk sees this namespace only), and this one's too unless the walk reports each socket.
    SocketCounts unlabelled = program_.socket_counts();
    if (program_.can_walk_sockets()) {
        const bool detailed = port || cgroup;
        const SocketWalk walk = program_.walk_sockets(detailed);
        listening_.walked(walk.listening_ports);
        if (detailed) {
            names = labels_.label_walked(walk.detailed);
            for (size_t i = 0; i < walk.detailed.size(); ++i) {
                const tcpstates_walked_socket& socket = walk.detailed[i];
                if (!in_gauge(socket.state)) continue;
                const SocketLabels::Values& values = names.values[i];
                ++counts[{socket.family == AF_INET6, socket.state, port ? values.port : 0,
                          cgroup ? values.cgroup : 0}];
            }
            fold_over_budget(counts, budget_);
        } else {
            for (int ipv6 = 0; ipv6 < 2; ++ipv6)
                for (unsigned state : kSocketStates)
                    unlabelled[ipv6][state] += walk.sockets[ipv6][state];
        }
    }
    for (int ipv6 = 0; ipv6 < 2; ++ipv6)
        for (unsigned state : kSocketStates) counts[{ipv6, state, 0, 0}] += unlabelled[ipv6][state];
    // Every state of both families is exported (at 0 too), unlabelled or under "other".
    for (const auto& [key, count] : counts) {
        std::vector<prometheus::ClientMetric::Label> sample_labels{
            {"family", std::string(family_name(key.ipv6 ? AF_INET6 : AF_INET))},
            {"state", std::string(tcp_state_name(key.state))}};
        if (port)
            sample_labels.push_back(
                {std::string(label_name(Label::Port)), names.port_names[key.port]});
        if (cgroup)
            sample_labels.push_back(
                {std::string(label_name(Label::Cgroup)), names.cgroup_names[key.cgroup]});
        add_sample(family, std::move(sample_labels), static_cast<double>(count));
    }
    return family;
}

std::vector<prometheus::MetricFamily> SocketStateCollector::Collect() const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    try {
        out.push_back(gauge(labels_.port_families().sockets, labels_.cgroup_families().sockets));
    } catch (const BpfError& e) {
        // No gauge rather than one without this namespace's sockets.
        walk_failures_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("{}; tcpstates_sockets left out of this scrape", e.what());
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

// The accept queues and the ephemeral ports (docs/metrics.md, "Queues"): what the last walk of
// the sockets found (kernel/socket_walk.hpp), under the `port` label and its caps like the other
// families. The listeners' drops are a counter kept with the others' totals: each walk adds what
// the kernel's running totals grew by, so it never goes down, whichever series a port's drops
// go to.
#include <sys/socket.h>

#include <algorithm>

#include "kernel/tcp_state.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/metric_family.hpp"

namespace tcpstatesd {

namespace {

std::string family_of(uint8_t ipv6) {
    return std::string(family_name(ipv6 ? AF_INET6 : AF_INET));
}

}  // namespace

bool CountedMetrics::in_port_label_set(uint16_t port) const {
    return std::binary_search(labels_.port.ports.begin(), labels_.port.ports.end(), port) ||
           (labels_.port.listening && (listening_now_[port / 64] >> (port % 64) & 1));
}

uint32_t CountedMetrics::queue_port_value(LabelledMetric metric, uint16_t port) const {
    // A family without the label takes no value (nor room) from it.
    if (port == 0 || !carries(Label::Port, metric)) return LabelValues::kOther;
    auto known = queue_port_values_.find(port);
    if (known == queue_port_values_.end())
        known = queue_port_values_.emplace(port, labeler_.values(port, 0, nullptr).port).first;
    return known->second;
}

void CountedMetrics::walked_queues(const SocketWalk& walk) {
    listen_queues_ = walk.listen_queues;
    busiest_destinations_ = walk.busiest_destinations;
    ephemeral_ports_ = walk.ephemeral_ports;
    queue_walk_totals_ = walk.queue_totals;
    const auto drop_series = [&](const SocketWalk::PortKey& key) {
        return place(
            series(LabelledMetric::ListenDrops, key.ipv6, 0, 0,
                   {queue_port_value(LabelledMetric::ListenDrops, key.port), LabelValues::kOther}));
    };
    for (const auto& [key, total] : walk.listen_drops) {
        uint64_t& read = listen_drops_read_[key];
        // The kernel's totals only grow (bpf/queues.bpf.h). A port with no new drop is left
        // alone: its value may be gone (nobody listens on it), its series removed.
        if (total == read) continue;
        counter_totals_[drop_series(key)] += total - read;
        read = total;
    }
    // A port listened on has its series from then on, at 0, so that increase() sees its first
    // drop.
    for (const auto& [key, queue] : walk.listen_queues) counter_totals_[drop_series(key)];
}

void CountedMetrics::queue_families(std::vector<prometheus::MetricFamily>& out) const {
    using prometheus::MetricType;
    const auto labels_of = [&](const SeriesKey& key) {
        std::vector<prometheus::ClientMetric::Label> labels{{"family", family_of(key.ipv6)}};
        add_series_labels(labels, key);
        return labels;
    };
    const auto port_series = [&](LabelledMetric metric, uint8_t ipv6, uint16_t port) {
        return place(
            series(metric, ipv6, 0, 0, {queue_port_value(metric, port), LabelValues::kOther}));
    };

    std::map<SeriesKey, uint64_t> length, limit;
    for (const auto& [key, queue] : listen_queues_) {
        length[port_series(LabelledMetric::ListenQueueLength, key.ipv6, key.port)] += queue.length;
        limit[port_series(LabelledMetric::ListenQueueLimit, key.ipv6, key.port)] += queue.limit;
    }
    prometheus::MetricFamily length_family = metric_family(
        metric_name(LabelledMetric::ListenQueueLength).data(),
        "Connections waiting in the listeners' accept queues (sk_ack_backlog), summed over the "
        "port's listeners, as of the last walk of the sockets.",
        MetricType::Gauge);
    for (const auto& [key, n] : length)
        add_sample(length_family, labels_of(key), static_cast<double>(n));
    out.push_back(std::move(length_family));
    prometheus::MetricFamily limit_family = metric_family(
        metric_name(LabelledMetric::ListenQueueLimit).data(),
        "The listeners' backlog (listen()'s, capped by net.core.somaxconn), summed over the "
        "port's listeners, as of the last walk: the kernel queues one connection more before "
        "it drops handshakes.",
        MetricType::Gauge);
    for (const auto& [key, n] : limit)
        add_sample(limit_family, labels_of(key), static_cast<double>(n));
    out.push_back(std::move(limit_family));

    prometheus::MetricFamily drops = metric_family(
        metric_name(LabelledMetric::ListenDrops).data(),
        "Handshakes the port's listeners dropped (their sk_drops: a full accept queue, as "
        "TcpExtListenDrops counts them), since the daemon started.",
        MetricType::Counter);
    for (auto it = counter_totals_.lower_bound({LabelledMetric::ListenDrops, 0, 0, 0, 0, 0});
         it != counter_totals_.end() && it->first.metric == LabelledMetric::ListenDrops; ++it)
        add_sample(drops, labels_of(it->first), static_cast<double>(it->second));
    out.push_back(std::move(drops));

    prometheus::MetricFamily ratio = metric_family(
        metric_name(LabelledMetric::EphemeralPorts).data(),
        "The most local ports of net.ipv4.ip_local_port_range in use towards one destination "
        "(address and port, TIME_WAIT included) over the range's size, as of the last walk; "
        "port: the destination's port where it is in the port label's set.",
        MetricType::Gauge);
    if (ephemeral_ports_ != 0) {
        std::map<SeriesKey, uint64_t> busiest;
        for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
            busiest[{LabelledMetric::EphemeralPorts, ipv6, 0, 0, LabelValues::kOther,
                     LabelValues::kOther}] = 0;
        for (const auto& [key, sockets] : busiest_destinations_) {
            const uint16_t group = in_port_label_set(key.port) ? key.port : 0;
            uint64_t& most = busiest[port_series(LabelledMetric::EphemeralPorts, key.ipv6, group)];
            most = std::max(most, sockets);
        }
        for (const auto& [key, sockets] : busiest)
            add_sample(ratio, labels_of(key),
                       static_cast<double>(sockets) / static_cast<double>(ephemeral_ports_));
    }
    out.push_back(std::move(ratio));

    out.push_back(single_sample(
        "tcpstatesd_socket_walk_untracked_listeners",
        "Listeners of the last walk whose drops the daemon could not follow (its table of "
        "listeners full): their drops are missing from tcpstates_listen_drops_total.",
        MetricType::Gauge, static_cast<double>(queue_walk_totals_.untracked_listeners)));
    out.push_back(single_sample(
        "tcpstatesd_socket_walk_uncounted_destination_sockets",
        "Sockets of the last walk with an ephemeral local port whose destination the table of "
        "destinations had no room for: missing from tcpstates_ephemeral_ports_used_ratio.",
        MetricType::Gauge, static_cast<double>(queue_walk_totals_.uncounted_sockets)));
}

}  // namespace tcpstatesd

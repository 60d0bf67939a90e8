#include "metrics/exemplar_labels.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

namespace tcpstatesd {

namespace {

constexpr std::string_view kShortened = "...";

}  // namespace

std::string endpoint(bool ipv6, const uint8_t (&address)[16], uint16_t port) {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(ipv6 ? AF_INET6 : AF_INET, address, text, sizeof text);
    const std::string host = ipv6 ? "[" + std::string(text) + "]" : std::string(text);
    return host + ":" + std::to_string(port);
}

std::vector<prometheus::ClientMetric::Label> exemplar_labels(const tcpstates_exemplar& exemplar,
                                                             std::string_view cgroup) {
    std::vector<prometheus::ClientMetric::Label> labels{
        {"local", endpoint(exemplar.ipv6 != 0, exemplar.laddr, exemplar.lport)},
        {"remote", endpoint(exemplar.ipv6 != 0, exemplar.raddr, exemplar.rport)},
    };
    if (cgroup.empty()) return labels;
    // Names and values are ASCII here but a cgroup's path: counting bytes, a multi-byte
    // character counts more than once, never less.
    size_t used = 0;
    for (const auto& label : labels) used += label.name.size() + label.value.size();
    constexpr std::string_view kName = "cgroup";
    if (used + kName.size() + kShortened.size() >= kExemplarLabelsLimit) return labels;
    const size_t room = kExemplarLabelsLimit - used - kName.size();
    if (cgroup.size() <= room) {
        labels.push_back({std::string(kName), std::string(cgroup)});
    } else {
        std::string_view tail = cgroup.substr(cgroup.size() - (room - kShortened.size()));
        // Not from the middle of a UTF-8 character: skip its continuation bytes.
        while (!tail.empty() && (static_cast<unsigned char>(tail.front()) & 0xC0) == 0x80)
            tail.remove_prefix(1);
        labels.push_back({std::string(kName), std::string(kShortened) + std::string(tail)});
    }
    return labels;
}

}  // namespace tcpstatesd

#include "kernel/transport.hpp"

namespace tcpstatesd {

std::string_view transport_name(Transport transport) {
    for (const auto& [known, name] : kTransportNames)
        if (known == transport) return name;
    return "?";
}

std::optional<Transport> parse_transport(std::string_view name) {
    for (const auto& [transport, known] : kTransportNames)
        if (known == name) return transport;
    return std::nullopt;
}

}  // namespace tcpstatesd

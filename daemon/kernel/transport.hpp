// How events travel from the kernel to the daemon, and the names the configuration file and
// `trace --transport` give them.
#pragma once

#include <optional>
#include <string_view>
#include <utility>

namespace tcpstatesd {

enum class Transport { Auto, RingBuffer, PerfBuffer };

// Every transport with its name, in the order the help texts list them.
inline constexpr std::pair<Transport, std::string_view> kTransportNames[] = {
    {Transport::Auto, "auto"},
    {Transport::RingBuffer, "ringbuf"},
    {Transport::PerfBuffer, "perfbuf"},
};

// "auto", "ringbuf" or "perfbuf".
std::string_view transport_name(Transport transport);
// The transport of that name; nullopt for any other text.
std::optional<Transport> parse_transport(std::string_view name);

}  // namespace tcpstatesd

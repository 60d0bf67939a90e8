// A network namespace of the test's own, for the tests whose reference is a per-namespace
// count of the kernel (TcpExt counters, the walk of the caller's namespace) or that change
// per-namespace sysctls.
#pragma once

#include <string>

#include "common/fd.hpp"

namespace tcpstatesd::test {

// This thread in a new network namespace with its loopback up, until destroyed: then back in
// the one it was in. Sockets made meanwhile stay in the new one (which lives as long as they).
// Throws std::system_error naming the call that failed.
class OwnNetworkNamespace {
public:
    OwnNetworkNamespace();
    OwnNetworkNamespace(const OwnNetworkNamespace&) = delete;
    OwnNetworkNamespace& operator=(const OwnNetworkNamespace&) = delete;
    ~OwnNetworkNamespace();

private:
    tcpstatesd::Fd previous_;
};

// Writes a sysctl of the calling thread's network namespace (/proc/sys/net is per namespace),
// e.g. "/proc/sys/net/ipv4/tcp_timestamps". Throws std::runtime_error naming it.
void write_sysctl(const std::string& path, const std::string& value);

}  // namespace tcpstatesd::test

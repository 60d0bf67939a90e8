#include "own_network_namespace.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace tcpstatesd::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

OwnNetworkNamespace::OwnNetworkNamespace()
    : previous_(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
    if (!previous_) fail("opening this thread's network namespace");
    if (unshare(CLONE_NEWNET) != 0) fail("unshare(CLONE_NEWNET)");
    const Fd control(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq lo{};
    std::strncpy(lo.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(control.get(), SIOCGIFFLAGS, &lo) != 0) fail("reading lo's flags");
    lo.ifr_flags = static_cast<short>(lo.ifr_flags | IFF_UP);
    if (ioctl(control.get(), SIOCSIFFLAGS, &lo) != 0) fail("bringing lo up");
}

OwnNetworkNamespace::~OwnNetworkNamespace() {
    setns(previous_.get(), CLONE_NEWNET);
}

void write_sysctl(const std::string& path, const std::string& value) {
    std::ofstream file(path);
    file << value;
    file.flush();
    if (!file) throw std::runtime_error("cannot write " + value + " to " + path);
}

}  // namespace tcpstatesd::test

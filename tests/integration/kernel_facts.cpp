#include "kernel_facts.hpp"

#include <sys/utsname.h>

#include <cstdio>
#include <tuple>

namespace tcpstatesd::test {

bool kernel_at_least(int major, int minor) {
    utsname name{};
    int running_major = 0;
    int running_minor = 0;
    if (uname(&name) != 0 ||
        std::sscanf(name.release, "%d.%d", &running_major, &running_minor) != 2)
        return false;
    return std::tie(running_major, running_minor) >= std::tie(major, minor);
}

bool child_has_peer_on_syn_recv() {
    return kernel_at_least(6, 15);
}

bool traces_socketless_resets() {
    return kernel_at_least(6, 10);
}

bool resets_have_reasons() {
    return kernel_at_least(6, 10);
}

}  // namespace tcpstatesd::test

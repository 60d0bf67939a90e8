#include "process/capabilities.hpp"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace tcpstatesd {

namespace {

[[noreturn]] void fail(const char* call) {
    throw std::system_error(errno, std::generic_category(),
                            std::string("dropping capabilities: ") + call);
}

}  // namespace

// The raw system calls, as glibc has no wrapper and libcap would be a dependency for two calls.
std::optional<std::uint64_t> effective_capabilities() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capget, &header, data) != 0) return std::nullopt;
    return data[0].effective | static_cast<std::uint64_t>(data[1].effective) << 32;
}

void drop_capabilities() {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
    const auto effective = effective_capabilities();
    if (!effective) fail("capget");
    if (((*effective >> CAP_SETPCAP) & 1) != 0)
        // PR_CAPBSET_READ fails (EINVAL) past the kernel's last capability.
        for (unsigned cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) fail("prctl(PR_CAPBSET_DROP)");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {};
    if (syscall(SYS_capset, &header, none) != 0) fail("capset");
}

}  // namespace tcpstatesd

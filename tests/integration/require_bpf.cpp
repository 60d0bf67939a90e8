#include "require_bpf.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tcpstatesd::test {

std::string bpf_unavailable_reason() {
    if (geteuid() != 0)
        return "not root (uid " + std::to_string(geteuid()) + "): run the tests as root";
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        return std::string("no kernel BTF at /sys/kernel/btf/vmlinux (") + std::strerror(errno) +
               "): needs a kernel built with CONFIG_DEBUG_INFO_BTF=y";
    return {};
}

bool running_in_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::strcmp(ci, "true") == 0;
}

std::set<std::string>& skipped_test_cases() {
    static std::set<std::string> skipped;
    return skipped;
}

}  // namespace tcpstatesd::test

// The guard every test that loads the real BPF program starts with. Where loading is
// impossible (not root, a kernel without BTF) a test must not pass silently in CI:
// REQUIRE_BPF() fails the test when CI=true, and otherwise warns, records the test case as
// skipped and leaves it (Catch2 v2 has no SKIP; main.cpp turns a run of skips into exit 77).
#pragma once

#include <catch2/catch.hpp>
#include <set>
#include <string>

namespace tcpstatesd::test {

// Empty when BPF tests can run here, else why they cannot and what to do.
std::string bpf_unavailable_reason();
bool running_in_ci();
// The names of the test cases REQUIRE_BPF left because they cannot run here.
std::set<std::string>& skipped_test_cases();

}  // namespace tcpstatesd::test

#define REQUIRE_BPF()                                                                            \
    do {                                                                                         \
        const std::string bpf_reason_ = ::tcpstatesd::test::bpf_unavailable_reason();            \
        if (!bpf_reason_.empty()) {                                                              \
            if (::tcpstatesd::test::running_in_ci())                                             \
                FAIL("cannot load BPF: " << bpf_reason_ << " (CI=true: failing, not skipping)"); \
            WARN("skipped: cannot load BPF: " << bpf_reason_);                                   \
            ::tcpstatesd::test::skipped_test_cases().insert(                                     \
                Catch::getResultCapture().getCurrentTestName());                                 \
            return;                                                                              \
        }                                                                                        \
    } while (false)

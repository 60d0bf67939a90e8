// The integration tests' main: Catch2's, and a skip CTest can see. Catch2 v2 has no skip, so a
// test case that cannot load BPF here (REQUIRE_BPF outside CI) returns early and is recorded;
// when every test case the run started was such a one, the process exits 77, which CTest reports
// as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt). CTest runs one test case per process,
// so each skipped one shows as skipped; a run of several where some did run reports those.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "require_bpf.hpp"

namespace {

class StartedTestCases : public Catch::TestEventListenerBase {
public:
    using TestEventListenerBase::TestEventListenerBase;
    void testCaseStarting(const Catch::TestCaseInfo& info) override { names().insert(info.name); }
    static std::set<std::string>& names() {
        static std::set<std::string> started;
        return started;
    }
};

}  // namespace

CATCH_REGISTER_LISTENER(StartedTestCases)

int main(int argc, char** argv) {
    const int failures = Catch::Session().run(argc, argv);
    const auto& started = StartedTestCases::names();
    if (failures == 0 && !started.empty() && tcpstatesd::test::skipped_test_cases() == started)
        return 77;
    return failures;
}

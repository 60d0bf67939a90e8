#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <prometheus/metric_family.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <thread>

#include "metrics/process_collector.hpp"
#include "temp_dir.hpp"

using tcpstatesd::ProcessCollector;
using tcpstatesd::test::TempDir;

namespace {

// Taken while the test binary initializes: the process started no later than this.
const double kLoadedAt =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

std::map<std::string, prometheus::MetricFamily> collect(const ProcessCollector& collector) {
    std::map<std::string, prometheus::MetricFamily> by_name;
    for (auto& family : collector.Collect()) {
        by_name[family.name] = family;
    }
    return by_name;
}

double value(const std::map<std::string, prometheus::MetricFamily>& families,
             const std::string& name) {
    const auto it = families.find(name);
    REQUIRE(it != families.end());
    REQUIRE(it->second.metric.size() == 1);
    return it->second.type == prometheus::MetricType::Counter
               ? it->second.metric.front().counter.value
               : it->second.metric.front().gauge.value;
}

double cpu_seconds_now() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

TEST_CASE("process collector: every metric with HELP and the right type") {
    const auto families = collect(ProcessCollector());
    const std::map<std::string, prometheus::MetricType> expected = {
        {"process_cpu_seconds_total", prometheus::MetricType::Counter},
        {"process_resident_memory_bytes", prometheus::MetricType::Gauge},
        {"process_virtual_memory_bytes", prometheus::MetricType::Gauge},
        {"process_open_fds", prometheus::MetricType::Gauge},
        {"process_max_fds", prometheus::MetricType::Gauge},
        {"process_start_time_seconds", prometheus::MetricType::Gauge},
        {"process_threads", prometheus::MetricType::Gauge},
    };
    CHECK(families.size() == expected.size());
    for (const auto& [name, type] : expected) {
        INFO(name);
        REQUIRE(families.count(name) == 1);
        CHECK(families.at(name).type == type);
        CHECK_FALSE(families.at(name).help.empty());
    }
}

TEST_CASE("process collector: open fds follow open() and close()") {
    ProcessCollector collector;
    const double before = value(collect(collector), "process_open_fds");
    const int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(value(collect(collector), "process_open_fds") == before + 1);
    close(fd);
    CHECK(value(collect(collector), "process_open_fds") == before);
}

TEST_CASE("process collector: max fds is the soft RLIMIT_NOFILE") {
    rlimit limit{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &limit) == 0);
    CHECK(value(collect(ProcessCollector()), "process_max_fds") ==
          static_cast<double>(limit.rlim_cur));
}

TEST_CASE("process collector: start time is when this process started") {
    const double start = value(collect(ProcessCollector()), "process_start_time_seconds");
    // /proc/stat's btime is whole seconds and starttime is in clock ticks: allow 2 s.
    CHECK(start <= kLoadedAt + 2);
    CHECK(start >= kLoadedAt - 10);
}

TEST_CASE("process collector: threads and CPU time agree with the kernel's other accounts") {
    ProcessCollector collector;
    const double threads_before = value(collect(collector), "process_threads");
    std::atomic<bool> release{false};
    std::thread extra([&] {
        while (!release) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    CHECK(value(collect(collector), "process_threads") == threads_before + 1);
    release = true;
    extra.join();

    // Burn half a CPU second (bounded by CPU time, not by wall time) so that a wrong unit
    // or tick rate could not hide in the comparison below.
    const double burn_until = cpu_seconds_now() + 0.5;
    volatile double sink = 0;
    while (cpu_seconds_now() < burn_until) {
        for (int i = 0; i < 100'000; ++i) {
            sink = sink + i * 0.5;
        }
    }
    const double clock_cpu = cpu_seconds_now();
    const double metric_cpu = value(collect(collector), "process_cpu_seconds_total");
    // Both count the same user+system time; /proc rounds to clock ticks (10 ms) per thread.
    CHECK(metric_cpu == Approx(clock_cpu).margin(0.1));

    rusage usage{};
    REQUIRE(getrusage(RUSAGE_SELF, &usage) == 0);
    const double resident = value(collect(collector), "process_resident_memory_bytes");
    CHECK(resident > 0);
    CHECK(resident <= static_cast<double>(usage.ru_maxrss) * 1024 + 4096 * 64);
    CHECK(value(collect(collector), "process_virtual_memory_bytes") > resident);
}

TEST_CASE("process collector: values computed from a known /proc") {
    TempDir proc;
    // comm with a space and a ')' inside; fields numbered as in proc(5).
    proc.write("self/stat",
               "42 (we ird) x) S 1 42 42 0 -1 4194560 100 0 0 0 "
               "250 150 0 0 20 0 7 0 360000 123456789 1000 18446744073709551615\n");
    proc.write("stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n");
    proc.write("self/limits",
               "Limit                     Soft Limit           Hard Limit           Units\n"
               "Max open files            1024                 524288               files\n");
    proc.write("self/fd/100", "");
    proc.write("self/fd/101", "");
    proc.write("self/fd/102", "");

    const auto families = collect(ProcessCollector(proc.path()));
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    CHECK(value(families, "process_cpu_seconds_total") == Approx(400 / ticks));
    CHECK(value(families, "process_threads") == 7);
    CHECK(value(families, "process_start_time_seconds") == Approx(1700000000 + 360000 / ticks));
    CHECK(value(families, "process_virtual_memory_bytes") == 123456789);
    CHECK(value(families, "process_resident_memory_bytes") ==
          1000 * static_cast<double>(sysconf(_SC_PAGESIZE)));
    CHECK(value(families, "process_max_fds") == 1024);
    CHECK(value(families, "process_open_fds") == 3);
}

TEST_CASE("process collector: unreadable or garbled /proc yields fewer metrics, no exception") {
    SECTION("nothing there") {
        CHECK(ProcessCollector("/nonexistent/proc").Collect().empty());
    }
    SECTION("garbled stat, no btime, unlimited fds") {
        TempDir proc;
        proc.write("self/stat", "42 (truncated) S 1 2\n");
        proc.write("stat", "cpu 1 2 3\n");
        proc.write("self/limits",
                   "Max open files            unlimited            unlimited    files\n");
        proc.write("self/fd/100", "");
        const auto families = collect(ProcessCollector(proc.path()));
        CHECK(families.size() == 1);
        CHECK(value(families, "process_open_fds") == 1);
    }
    SECTION("stat without btime drops only the start time") {
        TempDir proc;
        proc.write("self/stat", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 10 4096 1 0\n");
        proc.write("stat", "cpu 1 2 3\n");
        const auto families = collect(ProcessCollector(proc.path()));
        CHECK(families.count("process_cpu_seconds_total") == 1);
        CHECK(families.count("process_start_time_seconds") == 0);
    }
}

// The hits of sock:inet_sock_set_state that no program can count on the build machines: their
// kernel (6.18.44-fc, patched) runs no BPF program for a hit made while a thread of PID 1 is
// the current task, and counts no recursion miss (docs/performance.md, "Tracepoint hits the
// kernel delivered to neither program"). A softirq's transitions land there now and then. The
// tests that check exact counts allow exactly these, counted by perf; elsewhere they are 0.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace tcpstatesd::test {

// Counts, from construction to stop(), the hits on sockets with `port` at either end made
// while a thread of PID 1 was current: `perf stat -p 1` with a tracepoint filter, in a mount
// namespace of its own (unshare's mounts are private) with tracefs mounted there (perf looks the
// tracepoint up in tracefs).
class InitContextHits {
public:
    explicit InitContextHits(uint16_t port);
    ~InitContextHits();
    InitContextHits(const InitContextHits&) = delete;
    InitContextHits& operator=(const InitContextHits&) = delete;

    // Stops perf; the hits it counted. Throws std::runtime_error with perf's report if none.
    uint64_t stop();

private:
    pid_t perf_ = -1;
    std::string report_path_;
};

}  // namespace tcpstatesd::test

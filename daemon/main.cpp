// Entry point: dispatches to the daemon, `trace`, or the informational flags.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "config/daemon_options.hpp"
#include "runtime/daemon.hpp"
#include "trace/trace_command.hpp"
#include "version.hpp"

namespace {

constexpr const char* kUsage =
    "Usage: tcpstatesd [--config PATH] [FLAGS]    run the daemon\n"
    "       tcpstatesd --check-config [--config PATH] [FLAGS]\n"
    "       " TCPSTATESD_TRACE_SYNOPSIS
    "       tcpstatesd --version | --help\n"
    "\n"
    "TCP state transitions from the kernel (eBPF, tracepoint sock:inet_sock_set_state)\n"
    "as Prometheus metrics on HTTP /metrics, or as one line per transition with `trace`.\n"
    "\n"
    "  --config PATH               configuration file (default /etc/tcpstatesd/tcpstatesd.yaml;\n"
    "                              built-in defaults when that file does not exist)\n"
    "  --check-config              validate the configuration and exit 0 (valid) or 1\n"
    "  --web.listen-address ADDR   listen here instead (repeatable; \":9977\", \"[::1]:9977\")\n"
    "  --web.systemd-socket        serve on the sockets systemd passes (socket activation,\n"
    "                              tcpstatesd.socket) instead of the listen addresses\n"
    "  --web.telemetry-path PATH   serve the metrics here instead of /metrics\n"
    "  --log.level LEVEL           trace, debug, info, warn, error, critical or off\n"
    "  --web.config.file PATH      TLS and basic auth (Prometheus exporter-toolkit format);\n"
    "                              re-read on SIGHUP\n"
    "  --btf.path FILE             kernel BTF from this file, for kernels without\n"
    "                              /sys/kernel/btf/vmlinux (e.g. from BTFHub)\n"
    "\n"
    "`tcpstatesd trace --help` lists the trace options.\n";

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::strcmp(argv[1], "trace") == 0)
        return tcpstatesd::run_trace_command(argc - 1, argv + 1);
    if (argc == 2 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "-V") == 0)) {
        std::printf("tcpstatesd %s (%s)\n", tcpstatesd::kVersion, tcpstatesd::kGitRevision);
        return 0;
    }
    if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    try {
        const auto options = tcpstatesd::parse_daemon_options(argc, argv);
        if (options.check_config) return tcpstatesd::run_check_config(options);
        // One malloc arena for every thread, set before any starts. With glibc's default of
        // one per thread, each HTTP thread that renders a scrape keeps that render's memory
        // (about 2.5 bodies) resident after it is freed, so RSS grew with how many threads
        // had rendered, not with the bodies alive (docs/operations.md, "Securing the
        // endpoint"): at labels.max_series 100000, RSS at rest 126-200 MiB with arenas per
        // thread against 38.5 MiB with one (slow_readers_test.py). The per-event path
        // allocates nothing, and one render runs at a time: no contention to speak of.
        mallopt(M_ARENA_MAX, 1);
        return tcpstatesd::run_daemon(options);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "tcpstatesd: %s\n", e.what());
        return 2;
    }
}

#include "trace/trace_command.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernel/bpf_program.hpp"
#include "kernel/event_losses.hpp"
#include "kernel/event_source.hpp"
#include "labels/cgroup_names.hpp"
#include "process/logging.hpp"
#include "runtime/reactor.hpp"
#include "trace/trace_format.hpp"
#include "trace/trace_options.hpp"

namespace tcpstatesd {

namespace {

constexpr const char* kUsage =
    "Usage: " TCPSTATESD_TRACE_SYNOPSIS
    "Print one line per TCP state transition until interrupted (columns as libbpf-tools\n"
    "tcpstates; MS is the time spent in OLDSTATE, '-' when the socket was not seen entering it).\n"
    "PID and COMM are the socket's owner, the process that called connect() or listen() (an\n"
    "accepted socket: its listener's); '-' for a socket, or the listener of an accepted one,\n"
    "opened before the trace started.\n"
    "\n"
    "  -4, --ipv4             IPv4 sockets only\n"
    "  -6, --ipv6             IPv6 sockets only\n"
    "  -L, --localport PORTS  only these local ports (e.g. 80,443,8000-8010)\n"
    "  -D, --remoteport PORTS only these remote ports\n"
    "  -T, --timestamp        leading wall-clock time column\n"
    "  -w, --wide             wide columns (IPv6 addresses fit)\n"
    "      --json             one JSON object per line\n"
    "      --cgroup           the owner's cgroup (v2 path) as a last column ('?' if it is\n"
    "                         gone or outside this cgroup namespace)\n"
    "      --reason           why the socket closed (normal, refused, timeout, reset,\n"
    "                         aborted, ...) or a reset was sent (the kernel's reason, Linux\n"
    "                         >= 6.10): a REASON column before MS on lines that end in CLOSE\n"
    "                         and RST_SENT lines, '-' on others (JSON lines to CLOSE and of\n"
    "                         resets sent always have a \"reason\" field)\n"
    "      --resets           also a line per TCP reset sent or received, in the socket's\n"
    "                         state: RST_SENT in STATE, RST_RECV in STATE (a reset answering\n"
    "                         a segment that no socket took: in CLOSE, SKADDR and owner '-')\n"
    "      --retransmits      also a line per retransmitted segment: RETRANS in STATE\n"
    "      --transport T      kernel-to-user transport (default auto: ring buffer if the\n"
    "                         kernel has it, else perf buffer)\n"
    "      --btf.path FILE    kernel BTF from this file, for kernels without\n"
    "                         /sys/kernel/btf/vmlinux (e.g. from BTFHub)\n"
    "  -h, --help             this help\n";

int64_t realtime_minus_monotonic_ns() {
    timespec real{}, mono{};
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    return (int64_t(real.tv_sec) - mono.tv_sec) * 1000000000 + (real.tv_nsec - mono.tv_nsec);
}

class TracePrinter : public EventSink {
public:
    explicit TracePrinter(const TraceFormat& format) : format_(format) {}

    void begin_batch() { clock_offset_ns_ = realtime_minus_monotonic_ns(); }
    void on_event(const tcpstates_event& event) override {
        if (!trace_shows(event, format_)) return;
        std::string cgroup;
        if (cgroup_names_ && event.owner.pid != 0)
            cgroup = cgroup_names_->path(event.owner.cgroup_id).value_or("?");
        const std::string line = trace_line(
            event, format_, static_cast<int64_t>(event.ts_ns) + clock_offset_ns_, cgroup);
        std::fwrite(line.data(), 1, line.size(), stdout);
    }

private:
    TraceFormat format_;
    int64_t clock_offset_ns_ = 0;
    std::optional<CgroupNames> cgroup_names_ =
        format_.cgroup ? std::make_optional<CgroupNames>() : std::nullopt;
};

// Prints, on stderr, what was lost since the last report, by reason.
class LossReport {
public:
    explicit LossReport(const EventSource& source) : source_(source) {}

    void print() {
        const EventLosses now = source_.losses();
        for (size_t i = 0; i < kLossReasons; ++i) {
            const auto reason = static_cast<LossReason>(i);
            if (now[reason] > reported_[reason])
                std::fprintf(stderr, "tcpstatesd: %llu events lost (%s)\n",
                             static_cast<unsigned long long>(now[reason] - reported_[reason]),
                             std::string(loss_reason_name(reason)).c_str());
        }
        reported_ = now;
    }

private:
    const EventSource& source_;
    EventLosses reported_;
};

}  // namespace

int run_trace_command(int argc, char** argv) {
    TraceOptions options;
    try {
        options = parse_trace_options(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "tcpstatesd trace: %s\n", e.what());
        return 2;
    }
    if (options.help) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    // Warnings to stderr, the lines alone to stdout: what reads them parses every line.
    setup_logging(spdlog::level::warn, LogFormat::Text);
    TraceFormat format = options.format;
    BpfOptions& bpf = options.bpf;
    bpf.ring_buffer_wakeup_bytes = batched_wakeup_bytes(bpf.ring_buffer_bytes);
    try {
        // A closed pipe (`| head`) ends the trace through a failed write, not a signal.
        signal(SIGPIPE, SIG_IGN);
        Reactor reactor;
        reactor.on_signal(SIGINT, "SIGINT", [&] { reactor.stop(0); });
        reactor.on_signal(SIGTERM, "SIGTERM", [&] { reactor.stop(0); });

        BpfProgram program(bpf);
        format.reset_reasons = &program.reset_reasons();
        TracePrinter printer(format);
        EventSource source(program, printer);

        if (!isatty(STDOUT_FILENO)) {
            static char buffer[1 << 16];
            setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
        }
        const std::string header = trace_header(format);
        std::fwrite(header.data(), 1, header.size(), stdout);
        std::fflush(stdout);

        const auto drain = [&] {
            printer.begin_batch();
            source.consume();
            if (std::fflush(stdout) != 0) reactor.stop(0);
        };
        reactor.on_readable(source.fd(), "reading events", drain);
        reactor.every(EventSource::kDrainInterval, "reading events", drain);
        LossReport losses(source);
        reactor.every(std::chrono::seconds(1), "reporting losses", [&] { losses.print(); });
        int code = reactor.run();
        // Drain what arrived before the stop so that nothing already captured is dropped.
        printer.begin_batch();
        source.consume();
        std::fflush(stdout);
        losses.print();
        return code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tcpstatesd: error: %s\n", e.what());
        return 1;
    }
}

}  // namespace tcpstatesd

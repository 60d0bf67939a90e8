#include "trace/trace_options.hpp"

#include <sys/socket.h>

#include <stdexcept>
#include <string>

#include "common/command_line.hpp"
#include "config/port_list.hpp"
#include "kernel/transport.hpp"

namespace tcpstatesd {

namespace {

enum Option : int {
    kJson = 256,
    kCgroup,
    kReason,
    kResets,
    kRetransmits,
    kTransport,
    kBtfPath,
};

const option kLongOptions[] = {
    {"ipv4", no_argument, nullptr, '4'},
    {"ipv6", no_argument, nullptr, '6'},
    {"localport", required_argument, nullptr, 'L'},
    {"remoteport", required_argument, nullptr, 'D'},
    {"timestamp", no_argument, nullptr, 'T'},
    {"wide", no_argument, nullptr, 'w'},
    {"json", no_argument, nullptr, kJson},
    {"cgroup", no_argument, nullptr, kCgroup},
    {"reason", no_argument, nullptr, kReason},
    {"resets", no_argument, nullptr, kResets},
    {"retransmits", no_argument, nullptr, kRetransmits},
    {"transport", required_argument, nullptr, kTransport},
    {"btf.path", required_argument, nullptr, kBtfPath},
    {"help", no_argument, nullptr, 'h'},
    {nullptr, 0, nullptr, 0},
};

// A value's rule, with the option named in its error.
template <typename Rule>
auto checked(const char* flag, Rule rule) {
    try {
        return rule();
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(flag) + ": " + e.what());
    }
}

Transport transport_option(const std::string& name) {
    if (const auto transport = parse_transport(name)) return *transport;
    throw std::invalid_argument("unknown transport '" + name + "' (auto, ringbuf or perfbuf)");
}

}  // namespace

TraceOptions parse_trace_options(int argc, char** argv) {
    TraceOptions options;
    TraceFormat& format = options.format;
    BpfOptions& bpf = options.bpf;
    const auto handle = [&](int c) {
        switch (c) {
            case '4':
                bpf.filters.family = AF_INET;
                break;
            case '6':
                bpf.filters.family = AF_INET6;
                break;
            case 'L':
                bpf.filters.local_ports =
                    checked("--localport", [] { return parse_port_list(optarg); });
                break;
            case 'D':
                bpf.filters.remote_ports =
                    checked("--remoteport", [] { return parse_port_list(optarg); });
                break;
            case 'T':
                format.timestamp = true;
                break;
            case 'w':
                format.wide = true;
                break;
            case kJson:
                format.json = true;
                break;
            case kCgroup:
                format.cgroup = true;
                break;
            case kReason:
                format.reason = true;
                break;
            case kResets:
                format.resets = true;
                break;
            case kRetransmits:
                format.retransmits = true;
                break;
            case kTransport:
                bpf.transport = checked("--transport", [] { return transport_option(optarg); });
                break;
            case kBtfPath:
                if (!*optarg) throw std::invalid_argument("--btf.path: needs a file path");
                bpf.btf_path = optarg;
                break;
            case 'h':
                options.help = true;
                break;
            default:
                break;  // every option of kLongOptions and the letters is handled above
        }
    };
    for_each_option(argc, argv, "+:46L:D:Twh", kLongOptions, handle, "tcpstatesd trace --help");
    // Attach the reset and retransmission programs only when their lines are asked for: plain
    // `trace` costs the traced host no more than the state changes. --reason needs the resets'
    // too where they can run: an abort's RST sent before the move to CLOSE makes its reason
    // (bpf/tcpstates.h).
    bpf.resets = format.resets || (format.reason && bpf.btf_path.empty());
    bpf.retransmits = format.retransmits;
    // Those programs need the kernel's own BTF (BpfOptions): with --btf.path their lines would
    // silently never come.
    if ((bpf.resets || bpf.retransmits) && !bpf.btf_path.empty())
        throw std::invalid_argument(
            "--resets and --retransmits need the kernel's own BTF (/sys/kernel/btf/vmlinux), "
            "not --btf.path");
    return options;
}

}  // namespace tcpstatesd

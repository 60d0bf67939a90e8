#include "trace/trace_options.hpp"

#include <sys/socket.h>

#include <stdexcept>
#include <string>

#include "common/command_line.hpp"
#include "config/port_list.hpp"
#include "kernel/transport.hpp"

namespace tcpstatesd {

namespace {

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
    parse_command_line(argc, argv,
                       {
                           {"ipv4", '4', [&] { bpf.filters.family = AF_INET; }},
                           {"ipv6", '6', [&] { bpf.filters.family = AF_INET6; }},
                           {"localport", 'L',
                            [&](const char* ports) {
                                bpf.filters.local_ports =
                                    checked("--localport", [&] { return parse_port_list(ports); });
                            }},
                           {"remoteport", 'D',
                            [&](const char* ports) {
                                bpf.filters.remote_ports =
                                    checked("--remoteport", [&] { return parse_port_list(ports); });
                            }},
                           {"timestamp", 'T', [&] { format.timestamp = true; }},
                           {"wide", 'w', [&] { format.wide = true; }},
                           {"json", kLongOnly, [&] { format.json = true; }},
                           {"cgroup", kLongOnly, [&] { format.cgroup = true; }},
                           {"reason", kLongOnly, [&] { format.reason = true; }},
                           {"resets", kLongOnly, [&] { format.resets = true; }},
                           {"retransmits", kLongOnly, [&] { format.retransmits = true; }},
                           {"transport", kLongOnly,
                            [&](const char* name) {
                                bpf.transport =
                                    checked("--transport", [&] { return transport_option(name); });
                            }},
                           {"btf.path", kLongOnly,
                            [&](const char* path) {
                                if (!*path)
                                    throw std::invalid_argument("--btf.path: needs a file path");
                                bpf.btf_path = path;
                            }},
                           {"help", 'h', [&] { options.help = true; }},
                       },
                       "tcpstatesd trace --help");
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

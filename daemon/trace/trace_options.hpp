// The command line of `tcpstatesd trace`, parsed as the daemon's is (config/daemon_options.hpp):
// errors are std::invalid_argument messages in the same words, which run_trace_command prints
// as "tcpstatesd trace: MESSAGE" and exits 2.
#pragma once

#include "kernel/bpf_program.hpp"
#include "trace/trace_format.hpp"

namespace tcpstatesd {

struct TraceOptions {
    TraceFormat format;
    // What the options set: filters, transport, btf_path, resets and retransmits.
    BpfOptions bpf;
    bool help = false;  // -h, --help
};

// Parses `trace [OPTIONS]` (argv[0] is "trace"; synopsis: TCPSTATESD_TRACE_SYNOPSIS). Throws
// std::invalid_argument on an unknown option, a missing or invalid value, a stray argument,
// or --resets / --retransmits with --btf.path (their programs need the kernel's own BTF).
TraceOptions parse_trace_options(int argc, char** argv);

}  // namespace tcpstatesd

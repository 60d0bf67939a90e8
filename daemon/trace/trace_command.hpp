// `tcpstatesd trace`: one line per TCP state transition on stdout, like libbpf-tools
// `tcpstates`, until SIGINT/SIGTERM or until stdout goes away.
#pragma once

// The synopsis of `tcpstatesd trace`, in its own usage text and in the daemon's: one string
// literal (so that both texts stay constant expressions), its continuation lines indented to
// follow a 7-character prefix such as "Usage: ".
#define TCPSTATESD_TRACE_SYNOPSIS                                                    \
    "tcpstatesd trace [-4|-6] [-L PORTS] [-D PORTS] [-T] [-w] [--json] [--cgroup]\n" \
    "                        [--reason] [--resets] [--retransmits]\n"                \
    "                        [--transport auto|ringbuf|perfbuf] [--btf.path FILE]\n"

namespace tcpstatesd {

// argv[0] is "trace". Returns the process exit code.
int run_trace_command(int argc, char** argv);

}  // namespace tcpstatesd

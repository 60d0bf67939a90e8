// `tcpstatesd trace`: one line per TCP state transition on stdout, like libbpf-tools
// `tcpstates`, until SIGINT/SIGTERM or until stdout goes away.
#pragma once

namespace tcpstatesd {

// argv[0] is "trace". Returns the process exit code.
int run_trace_command(int argc, char** argv);

}  // namespace tcpstatesd

// The daemon: the BPF program, the event source and the aggregator on one reactor thread,
// libmicrohttpd's threads serving scrapes, SIGHUP reloading the configuration, systemd told
// about each step.
#pragma once

#include "config/daemon_options.hpp"

namespace tcpstatesd {

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int run_daemon(const DaemonOptions& options);

}  // namespace tcpstatesd

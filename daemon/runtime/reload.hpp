// SIGHUP: re-reads the configuration and the web config and applies what can change while
// running (filters, labels, histogram buckets, the walk's CPU share, logging, TLS and users), or
// nothing at all.
#pragma once

#include "config/daemon_options.hpp"
#include "http/http_server.hpp"
#include "kernel/bpf_program.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/self_metrics.hpp"
#include "runtime/count_upkeep.hpp"

namespace tcpstatesd {

// The buckets of the histograms a configuration asks for (metrics.*_buckets_seconds).
HistogramBuckets histogram_buckets(const Config& config);

// What a reload reconfigures; each must outlive the Reloader.
struct ReloadTargets {
    BpfProgram& program;
    CountedMetrics& metrics;
    CountUpkeep& upkeep;
    HttpServer& server;
    SelfMetrics& self_metrics;
};

class Reloader {
public:
    Reloader(const DaemonOptions& options, Settings running, ReloadTargets targets);

    // Applies the files as they are now. Never throws: a file with an error, or a change that
    // needs a restart, is logged, sets tcpstatesd_config_last_reload_successful to 0 and leaves
    // everything as it was.
    void reload();

private:
    // Applies everything or nothing: throws ConfigError, BpfError or HttpError with the
    // running configuration whole.
    void apply(Settings next);

    const DaemonOptions& options_;
    Settings running_;
    ReloadTargets targets_;
};

}  // namespace tcpstatesd

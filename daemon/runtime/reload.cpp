#include "runtime/reload.hpp"

#include <spdlog/spdlog.h>

#include "process/logging.hpp"

namespace tcpstatesd {

HistogramBuckets histogram_buckets(const Config& config) {
    return {config.metrics.duration_buckets, config.metrics.handshake_rtt_buckets,
            config.metrics.native_histograms};
}

Reloader::Reloader(const DaemonOptions& options, Settings running, ReloadTargets targets)
    : options_(options), running_(std::move(running)), targets_(targets) {}

void Reloader::reload() {
    spdlog::info("reloading the configuration");
    try {
        apply(load_settings(options_));
        targets_.self_metrics.reload_succeeded();
        spdlog::info("configuration reloaded from {}", running_.config.source);
    } catch (const std::exception& e) {
        targets_.self_metrics.reload_failed();
        spdlog::error("reload failed, keeping the running configuration: {}", e.what());
    }
}

void Reloader::apply(Settings next) {
    const auto restart_keys = keys_needing_restart(running_.config, next.config);
    if (!restart_keys.empty()) {
        std::string keys;
        for (const auto& key : restart_keys) keys += (keys.empty() ? "" : ", ") + key;
        throw ConfigError(next.config.source + ": changing " + keys +
                          " needs a restart (systemctl restart tcpstatesd); nothing was applied");
    }
    // All or nothing: what can fail comes first, and changes nothing that is in force or
    // restores what it changed before it throws. New buckets: a swap, which keeps every count.
    targets_.metrics.prepare_buckets(histogram_buckets(next.config));
    // The filters restore themselves when a map update fails (BpfProgram::apply_filters).
    targets_.program.apply_filters(next.config.filters);
    // TLS and users: the server keeps serving as before unless the new settings are whole
    // (set_security starts the new TLS daemons before it stops the old ones). When it fails,
    // the filters go back to those in force: the one restore of a later step.
    if (next.web != running_.web) {
        try {
            targets_.server.set_security(next.web);
        } catch (const std::exception&) {
            targets_.program.apply_filters(running_.config.filters);
            throw;
        }
    }
    // Nothing below can fail.
    targets_.metrics.configure(next.config.labels, histogram_buckets(next.config));
    targets_.upkeep.set_walk_cpu_percent(next.config.metrics.socket_walk_cpu_percent);
    targets_.metrics.set_exemplars(next.config.metrics.exemplars);
    setup_logging(next.config.logging.level, next.config.logging.format);
    running_ = std::move(next);
}

}  // namespace tcpstatesd

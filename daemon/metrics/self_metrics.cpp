#include "metrics/self_metrics.hpp"

#include <chrono>

#include "version.hpp"

namespace tcpstatesd {

namespace {

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

SelfMetrics::SelfMetrics(prometheus::Registry& registry)
    : reload_successful_(prometheus::BuildGauge()
                             .Name("tcpstatesd_config_last_reload_successful")
                             .Help("Whether the last configuration reload succeeded (1) or was "
                                   "rejected and the previous configuration kept (0).")
                             .Register(registry)
                             .Add({})),
      reload_success_timestamp_(
          prometheus::BuildGauge()
              .Name("tcpstatesd_config_last_reload_success_timestamp_seconds")
              .Help("Time of the last successful configuration load (Unix seconds).")
              .Register(registry)
              .Add({})) {
    prometheus::BuildGauge()
        .Name("tcpstatesd_build_info")
        .Help("Always 1; the labels say which tcpstatesd is running.")
        .Register(registry)
        .Add({{"version", kVersion}, {"revision", kGitRevision}})
        .Set(1);
    reload_succeeded();
}

void SelfMetrics::reload_succeeded() {
    reload_successful_.Set(1);
    reload_success_timestamp_.Set(unix_now());
}

void SelfMetrics::reload_failed() {
    reload_successful_.Set(0);
}

}  // namespace tcpstatesd

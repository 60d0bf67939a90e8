// The daemon's metrics about itself that live in the registry: which build runs, and how the
// last configuration reload went (named as Prometheus names its own).
#pragma once

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace tcpstatesd {

class SelfMetrics {
public:
    // Registers tcpstatesd_build_info and the reload gauges; the configuration the daemon
    // starts with counts as a successful load.
    explicit SelfMetrics(prometheus::Registry& registry);

    void reload_succeeded();
    void reload_failed();

private:
    prometheus::Gauge& reload_successful_;
    prometheus::Gauge& reload_success_timestamp_;
};

}  // namespace tcpstatesd

#include "runtime/daemon.hpp"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>

#include "kernel/bpf_program.hpp"
#include "config/config.hpp"
#include "kernel/event_source.hpp"
#include "http/http_server.hpp"
#include "metrics/kernel_collector.hpp"
#include "runtime/logging.hpp"
#include "metrics/process_collector.hpp"
#include "runtime/reactor.hpp"
#include "runtime/systemd_notify.hpp"
#include "metrics/transition_metrics.hpp"
#include "version.hpp"

namespace tcpstatesd {

namespace {

using Clock = std::chrono::steady_clock;

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

BpfOptions bpf_options(const Config& config) {
    BpfOptions options;
    options.transport = config.events.transport;
    options.ring_buffer_bytes = config.events.ring_buffer_bytes;
    options.perf_buffer_pages = config.events.perf_buffer_pages;
    options.socket_table_size = config.events.socket_table_size;
    options.event_details = false;  // the metrics need only the compact transitions
    options.ring_buffer_wakeup_bytes = config.events.ring_buffer_bytes / 8;
    options.filters = config.filters;
    return options;
}

HttpServerOptions http_options(const Config& config, const WebSecurity& security) {
    HttpServerOptions options;
    options.security = security;
    options.listen_addresses = config.web.listen_addresses;
    options.telemetry_path = config.web.telemetry_path;
    options.max_threads = config.web.max_threads;
    return options;
}

Config load(const DaemonOptions& options) {
    Config config = load_config(options.config_path);
    apply_overrides(config, options);
    return config;
}

// Gauges of the configuration's health, named as Prometheus names its own.
struct ReloadMetrics {
    explicit ReloadMetrics(prometheus::Registry& registry)
        : successful(prometheus::BuildGauge()
                         .Name("tcpstatesd_config_last_reload_successful")
                         .Help("Whether the last configuration reload succeeded (1) or was "
                               "rejected and the previous configuration kept (0).")
                         .Register(registry)
                         .Add({})),
          timestamp(prometheus::BuildGauge()
                        .Name("tcpstatesd_config_last_reload_success_timestamp_seconds")
                        .Help("Time of the last successful configuration load (Unix seconds).")
                        .Register(registry)
                        .Add({})) {}

    void succeeded() {
        successful.Set(1);
        timestamp.Set(unix_now());
    }
    void failed() { successful.Set(0); }

    prometheus::Gauge& successful;
    prometheus::Gauge& timestamp;
};

void register_build_info(prometheus::Registry& registry) {
    prometheus::BuildGauge()
        .Name("tcpstatesd_build_info")
        .Help("Always 1; the labels say which tcpstatesd is running.")
        .Register(registry)
        .Add({{"version", kVersion}, {"revision", kGitRevision}})
        .Set(1);
}

}  // namespace

int run_daemon(const DaemonOptions& options) {
    // Until the configuration says otherwise, so that an error in it is logged like any other
    // (under systemd: with error priority in the unit's journal).
    setup_logging(spdlog::level::info, LogFormat::Text);
    Config config;
    WebSecurity web;
    try {
        config = load(options);
        web = load_web_security(options);
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
    setup_logging(config.logging.level, config.logging.format);
    SystemdNotifier systemd;

    try {
        // Signals first: the HTTP server's threads must inherit them blocked.
        Reactor reactor;
        reactor.on_signal(SIGTERM, [&] { reactor.stop(0); });
        reactor.on_signal(SIGINT, [&] { reactor.stop(0); });
        std::function<void()> reload;  // set once everything it reconfigures exists
        reactor.on_signal(SIGHUP, [&] {
            if (reload) reload();
        });

        auto registry = std::make_shared<prometheus::Registry>();
        register_build_info(*registry);
        ReloadMetrics reload_metrics(*registry);
        reload_metrics.succeeded();

        BpfProgram program(bpf_options(config));
        spdlog::info(
            "BPF program attached to sock:inet_sock_set_state (tp_btf), transport {}, "
            "socket table {} entries",
            transport_name(program.transport()), program.socket_table_capacity());

        UserSpaceLosses losses;
        TransitionMetrics metrics(*registry, config.metrics.duration_buckets, losses);
        auto kernel = std::make_shared<KernelCollector>(program, losses);
        auto process = std::make_shared<ProcessCollector>();
        EventSource source(program, metrics);
        reactor.on_readable(source.fd(), [&] { source.consume(); });
        reactor.every(EventSource::kDrainInterval, [&] { source.consume(); });

        std::atomic<Clock::rep> heartbeat{Clock::now().time_since_epoch().count()};
        std::atomic<bool> ready{false};
        const auto healthy = [&] {
            const auto last = Clock::time_point(Clock::duration(heartbeat.load()));
            return Clock::now() - last < std::chrono::seconds(10);
        };
        HttpServer server(http_options(config, web), registry, healthy,
                          [&] { return ready.load(); }, {kernel, process});

        reload = [&] {
            systemd.reloading();
            spdlog::info("reloading the configuration");
            try {
                Config next = load(options);
                WebSecurity next_web = load_web_security(options);
                const auto restart_keys = keys_needing_restart(config, next);
                if (!restart_keys.empty()) {
                    std::string keys;
                    for (const auto& k : restart_keys) keys += (keys.empty() ? "" : ", ") + k;
                    throw ConfigError(next.source + ": changing " + keys +
                                      " needs a restart (systemctl restart tcpstatesd); "
                                      "nothing was applied");
                }
                // First, as the one step that can still fail (GnuTLS refusing a key): then
                // nothing else has changed.
                if (next_web != web) server.set_security(next_web);
                web = std::move(next_web);
                program.apply_filters(next.filters);
                kernel->set_filters(next.filters);
                metrics.set_duration_buckets(next.metrics.duration_buckets);
                setup_logging(next.logging.level, next.logging.format);
                config = std::move(next);
                reload_metrics.succeeded();
                spdlog::info("configuration reloaded from {}", config.source);
            } catch (const std::exception& e) {
                reload_metrics.failed();
                spdlog::error("reload failed, keeping the running configuration: {}", e.what());
            }
            systemd.ready();
        };

        // The heartbeat every second feeds /-/healthy; a status line for `systemctl status`
        // every ten.
        uint64_t last_received = 0;
        auto last_status = Clock::now();
        reactor.every(std::chrono::seconds(1), [&] {
            const auto now = Clock::now();
            heartbeat = now.time_since_epoch().count();
            if (now - last_status < std::chrono::seconds(10)) return;
            const uint64_t received = metrics.events_received();
            const double seconds = std::chrono::duration<double>(now - last_status).count();
            const size_t tracked = program.for_each_socket([](const tcpstates_socket&) {});
            uint64_t lost = 0;
            for (const LossCount& loss :
                 losses_by_reason(program.read_counters(), program.recursion_misses(), losses))
                lost += loss.count;
            systemd.status(fmt::format("{:.0f} events/s, {} sockets tracked, {} events lost",
                                       static_cast<double>(received - last_received) / seconds,
                                       tracked, lost));
            last_received = received;
            last_status = now;
        });
        if (systemd.watchdog_enabled()) reactor.enable_systemd_watchdog();

        ready = true;
        systemd.ready();
        systemd.status("tracing TCP state transitions");
        spdlog::info("tcpstatesd {} ready", kVersion);

        const int code = reactor.run();
        systemd.stopping();
        ready = false;
        source.consume();  // what the kernel already handed over still counts
        spdlog::info("stopping: detaching the BPF program");
        return code;
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}

}  // namespace tcpstatesd

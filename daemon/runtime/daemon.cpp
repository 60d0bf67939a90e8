#include "runtime/daemon.hpp"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <memory>

#include "http/http_server.hpp"
#include "kernel/bpf_program.hpp"
#include "kernel/event_source.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/listening_ports.hpp"
#include "labels/socket_labels.hpp"
#include "metrics/event_loss_collector.hpp"
#include "metrics/process_collector.hpp"
#include "metrics/self_metrics.hpp"
#include "metrics/series_budget.hpp"
#include "metrics/socket_state_collector.hpp"
#include "metrics/transition_metrics.hpp"
#include "runtime/capabilities.hpp"
#include "runtime/logging.hpp"
#include "runtime/reactor.hpp"
#include "runtime/reload.hpp"
#include "runtime/status_report.hpp"
#include "runtime/systemd_notify.hpp"
#include "version.hpp"

namespace tcpstatesd {

namespace {

BpfOptions bpf_options(const Config& config) {
    BpfOptions options;
    options.transport = config.events.transport;
    options.ring_buffer_bytes = config.events.ring_buffer_bytes;
    options.perf_buffer_pages = config.events.perf_buffer_pages;
    options.socket_table_size = config.events.socket_table_size;
    options.event_details = false;  // the metrics need only the compact transitions
    options.ring_buffer_wakeup_bytes = batched_wakeup_bytes(config.events.ring_buffer_bytes);
    options.filters = config.filters;
    options.btf_path = config.events.btf_path;
    options.resets = config.events.resets;
    options.retransmits = config.events.retransmits;
    return options;
}

// The sockets to serve on: those systemd passed (--web.systemd-socket), or web.listen_addresses.
std::vector<Listener> listeners(const DaemonOptions& options, const Config& config) {
    return options.systemd_socket ? systemd_listeners()
                                  : listen_on_each(config.web.listen_addresses);
}

HttpServerOptions http_options(const Settings& settings) {
    HttpServerOptions options;
    options.security = settings.web;
    options.telemetry_path = settings.config.web.telemetry_path;
    options.max_threads = settings.config.web.max_threads;
    return options;
}

}  // namespace

int run_daemon(const DaemonOptions& options) {
    // Until the configuration says otherwise, so that an error in it is logged like any other
    // (under systemd: with error priority in the unit's journal).
    setup_logging(spdlog::level::info, LogFormat::Text);
    Settings settings;
    try {
        settings = load_settings(options);
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
    setup_logging(settings.config.logging.level, settings.config.logging.format);
    const SystemdNotifier systemd;

    try {
        // Signals first: the HTTP server's threads must inherit them blocked.
        Reactor reactor;
        reactor.on_signal(SIGTERM, "SIGTERM", [&] { reactor.stop(0); });
        reactor.on_signal(SIGINT, "SIGINT", [&] { reactor.stop(0); });
        std::function<void()> reload;  // set once everything it reconfigures exists
        reactor.on_signal(SIGHUP, "reloading", [&] {
            if (reload) reload();
        });

        auto registry = std::make_shared<prometheus::Registry>();
        SelfMetrics self_metrics(*registry);
        BpfProgram program(bpf_options(settings.config));
        if (program.socket_table_capacity() == 0)
            spdlog::info(
                "BPF programs attached to sock:inet_sock_set_state (tp_btf), transport {}, "
                "socket state in socket storage",
                transport_name(program.transport()));
        else
            spdlog::info(
                "BPF programs attached to sock:inet_sock_set_state (raw_tp), transport {}, "
                "socket table {} sockets, no start-up walk (needs the kernel's BTF)",
                transport_name(program.transport()), program.socket_table_capacity());
        ListeningPorts listening_ports;
        CgroupNames cgroup_names;
        SocketLabels socket_labels(settings.config.labels, cgroup_names, listening_ports);
        SeriesBudget series_budget(*registry, settings.config.labels.max_series);
        auto socket_states = std::make_shared<SocketStateCollector>(program, listening_ports,
                                                                    socket_labels, series_budget);
        socket_labels.admit_listening_ports();
        if (program.can_walk_sockets())
            spdlog::info("found {} TCP sockets in this network namespace in {:.3f} s",
                         socket_states->startup_sockets(), socket_states->startup_seconds());
        TransitionMetrics metrics(*registry, settings.config.metrics.duration_buckets,
                                  settings.config.labels, socket_labels, series_budget);
        EventSource source(program, metrics);
        reactor.on_readable(source.fd(), "reading events", [&] { source.consume(); });
        reactor.every(EventSource::kDrainInterval, "reading events", [&] { source.consume(); });

        StatusReport status(systemd, metrics, source);
        reactor.every(StatusReport::kTickInterval, "reporting status", [&] { status.tick(); });
        std::atomic<bool> ready{false};
        // Every kernel object and socket exists now; the HTTP threads are yet to start and
        // inherit the empty capability sets.
        auto sockets = listeners(options, settings.config);
        drop_capabilities();
        spdlog::info("capabilities dropped (no_new_privs set)");
        HttpServer server(
            http_options(settings), std::move(sockets), registry, [&] { return status.healthy(); },
            [&] { return ready.load(); },
            {socket_states, std::make_shared<EventLossCollector>(source, program),
             std::make_shared<ProcessCollector>()});

        Reloader reloader(options, std::move(settings), {program, metrics, server, self_metrics});
        reload = [&] {
            systemd.reloading();
            reloader.reload();
            systemd.ready();
        };
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

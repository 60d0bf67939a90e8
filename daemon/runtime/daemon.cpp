#include "runtime/daemon.hpp"

#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <utility>

#include "http/http_server.hpp"
#include "kernel/bpf_program.hpp"
#include "kernel/count_tables.hpp"
#include "kernel/event_source.hpp"
#include "kernel/exemplar_tables.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/tuple_labels.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/event_loss_collector.hpp"
#include "metrics/process_collector.hpp"
#include "metrics/self_metrics.hpp"
#include "metrics/series_budget.hpp"
#include "process/capabilities.hpp"
#include "process/logging.hpp"
#include "runtime/count_upkeep.hpp"
#include "runtime/reactor.hpp"
#include "runtime/reload.hpp"
#include "runtime/status_report.hpp"
#include "runtime/systemd_notify.hpp"
#include "version.hpp"

namespace tcpstatesd {

namespace {

// The tuple table's capacity: a tuple makes at least one series, so more tuples than
// labels.max_series are never exported on their own; room for four times as many keeps the
// table from filling between swaps. Fixed at start (a raised max_series reaches the kernel at
// the next restart).
uint32_t tuple_table_size(const LabelsConfig& labels) {
    return std::clamp<uint32_t>(4 * labels.max_series, 1024, 65536);
}

// Labelled histograms (durations and handshake RTTs): each costs buckets + 3 samples of
// labels.max_series, the cheaper kind's at least.
uint32_t duration_table_size(const Config& config) {
    const auto cost = static_cast<uint32_t>(std::min(config.metrics.duration_buckets.size(),
                                                     config.metrics.handshake_rtt_buckets.size()) +
                                            3);
    return std::clamp<uint32_t>(4 * config.labels.max_series / cost, 64, 65536);
}

// Native buckets: a series spanning 1 us .. 1 h (31 octaves) has up to 250 at schema 3, about
// 8 per sample its classic buckets cost of labels.max_series; the floor holds the unlabelled
// histograms' (2 families, about 30 transitions each, and the handshake RTTs). A full table
// costs the series it refuses their native buckets (counted), never their classic ones.
uint32_t native_table_size(const LabelsConfig& labels) {
    return std::clamp<uint32_t>(8 * labels.max_series, 16384, 1u << 20);
}
// Exemplar candidates: one per duration series and CPU observed in a second (the table is
// taken every kExemplarInterval), a series being a labelled histogram or an unlabelled one.
// Allocated as used: the bound matters only to a host with many CPUs and series.
uint32_t exemplar_table_size(uint32_t duration_table_size) {
    return std::min<uint32_t>(2 * duration_table_size + TCPSTATES_DURATION_SLOTS / 2, 65536);
}
// How often the exemplar candidates are taken from the programs: each time waits for them
// (milliseconds, on the reactor thread, no CPU), and a candidate shows at the scrape after.
constexpr std::chrono::seconds kExemplarInterval{1};

BpfOptions bpf_options(const Config& config) {
    BpfOptions options;
    options.transport = config.events.transport;
    options.ring_buffer_bytes = config.events.ring_buffer_bytes;
    options.perf_buffer_pages = config.events.perf_buffer_pages;
    options.socket_table_size = config.events.socket_table_size.value_or(
        config.events.btf_path.empty() ? kDefaultSocketTableSize
                                       : kDefaultPreallocatedSocketTableSize);
    options.event_details = false;  // counts in the maps
    options.filters = config.filters;
    options.labels = tuple_label_settings(config.labels);
    options.duration_bounds_ns = bounds_ns(config.metrics.duration_buckets);
    options.handshake_rtt_bounds_ns = bounds_ns(config.metrics.handshake_rtt_buckets);
    options.tuple_table_size = tuple_table_size(config.labels);
    options.duration_table_size = duration_table_size(config);
    options.native_schema = native_schema(config.metrics.native_histograms);
    options.native_table_size = native_table_size(config.labels);
    options.exemplar_table_size = exemplar_table_size(options.duration_table_size);
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
        const BpfOptions kernel_options = bpf_options(settings.config);
        BpfProgram program(kernel_options);
        spdlog::info(
            "BPF programs attached to sock:inet_sock_set_state ({}), counting in the kernel, "
            "socket table {} sockets ({}){}",
            program.preallocated() ? "raw_tp" : "tp_btf", program.socket_table_capacity(),
            program.preallocated() ? "preallocated" : "allocated as used",
            program.can_walk_sockets() ? "" : ", no walk of the sockets (needs the kernel's BTF)");
        CountTables tables(program, kernel_options.tuple_table_size,
                           kernel_options.duration_table_size);
        CgroupNames cgroup_names;
        TupleLabeler labeler(settings.config.labels, cgroup_names);
        SeriesBudget series_budget(*registry, settings.config.labels.max_series);
        auto metrics = std::make_shared<CountedMetrics>(program, tables, labeler, series_budget,
                                                        settings.config.labels,
                                                        histogram_buckets(settings.config));
        ExemplarTables exemplar_tables(program, kernel_options.exemplar_table_size);
        metrics->set_exemplars(settings.config.metrics.exemplars);
        CountUpkeep upkeep(program, *metrics, settings.config.metrics.socket_walk_cpu_percent);
        if (program.can_walk_sockets())
            spdlog::info("found {} TCP socket{} in this network namespace in {:.3f} s",
                         upkeep.startup_sockets(), upkeep.startup_sockets() == 1 ? "" : "s",
                         upkeep.startup_seconds());
        reactor.every(CountUpkeep::kTickInterval, "walking the sockets", [&] { upkeep.tick(); });
        bool exemplar_failed = false;
        reactor.every(kExemplarInterval, "taking the exemplar candidates", [&] {
            try {
                metrics->add_exemplars(exemplar_tables.take());
            } catch (const BpfError& e) {
                // The programs keep their candidates meanwhile; only the exemplars wait.
                if (!std::exchange(exemplar_failed, true)) spdlog::warn("{}", e.what());
            }
        });
        EventSource source(program, *metrics);
        reactor.on_readable(source.fd(), "reading new tuples", [&] { source.consume(); });

        StatusReport status(systemd, *metrics, source);
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
            {metrics, std::make_shared<EventLossCollector>(source, program),
             std::make_shared<ProcessCollector>()});

        Reloader reloader(options, std::move(settings),
                          {program, *metrics, upkeep, server, self_metrics});
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
        spdlog::info("stopping: detaching the BPF programs");
        return code;
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
}

}  // namespace tcpstatesd

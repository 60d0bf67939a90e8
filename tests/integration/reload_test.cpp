// A reload is all or nothing: when the kernel refuses a filter update halfway, the running
// configuration stays whole (TLS and users, filters, labels, buckets), and the reload is
// reported as failed. The daemon's own objects, on the real program; the failure is the
// kernel's own: the remote port filter's map is frozen (BPF_MAP_FREEZE makes it read-only for
// system calls; the programs still read it).
#include <bpf/bpf.h>
#include <prometheus/registry.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/daemon_options.hpp"
#include "http/http_server.hpp"
#include "http_client.hpp"
#include "kernel/bpf_program.hpp"
#include "kernel/count_tables.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/tuple_labels.hpp"
#include "loopback.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/self_metrics.hpp"
#include "metrics/series_budget.hpp"
#include "require_bpf.hpp"
#include "runtime/count_upkeep.hpp"
#include "runtime/reload.hpp"
#include "temp_dir.hpp"
#include "test_certificate.hpp"

using namespace tcpstatesd::test;

namespace {

// This process's BPF map called `name`, found among its own fds so that no other process's
// program is touched; the test holds one program, so exactly one.
int own_map(const std::string& name) {
    std::vector<int> found;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fdinfo")) {
        std::ifstream info(entry.path());
        const std::string text(std::istreambuf_iterator<char>(info), {});
        if (text.find("map_id:") == std::string::npos) continue;
        const int fd = std::stoi(entry.path().filename().string());
        bpf_map_info map{};
        uint32_t size = sizeof map;
        if (bpf_obj_get_info_by_fd(fd, &map, &size) == 0 && name == map.name) found.push_back(fd);
    }
    INFO("maps called " << name << " among this process's fds: " << found.size());
    REQUIRE(found.size() == 1);
    return found[0];
}

std::set<uint16_t> ports_in(int map_fd) {
    std::set<uint16_t> ports;
    uint16_t key = 0;
    const uint16_t* previous = nullptr;
    while (bpf_map_get_next_key(map_fd, previous, &key) == 0) {
        ports.insert(key);
        previous = &key;
    }
    return ports;
}

double gauge(prometheus::Registry& registry, const std::string& name) {
    for (const auto& family : registry.Collect())
        if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
    FAIL("no gauge " << name);
    return -1;
}

// The samples of `name` carrying port="PORT".
size_t samples_for_port(const std::vector<prometheus::MetricFamily>& families,
                        const std::string& name, uint16_t port) {
    size_t n = 0;
    for (const auto& family : families) {
        if (family.name != name) continue;
        for (const auto& sample : family.metric)
            for (const auto& label : sample.label)
                if (label.name == "port" && label.value == std::to_string(port)) ++n;
    }
    return n;
}

// The bucket bounds of the first duration histogram (+Inf last).
std::vector<double> duration_bounds(const std::vector<prometheus::MetricFamily>& families) {
    std::vector<double> bounds;
    for (const auto& family : families)
        if (family.name == "tcpstates_state_duration_seconds" && !family.metric.empty())
            for (const auto& bucket : family.metric[0].histogram.bucket)
                bounds.push_back(bucket.upper_bound);
    return bounds;
}

}  // namespace

TEST_CASE(
    "a reload whose filter update the kernel refuses halfway is reported failed and leaves TLS, "
    "users, filters, labels and buckets as they were",
    "[reload]") {
    REQUIRE_BPF();
    Fd listener_a = bind_loopback(AF_INET);  // in the running filter
    Fd listener_b = bind_loopback(AF_INET);  // in the new one only
    // Qualified: the daemon's tcpstatesd::local_port (http_server.hpp) is a candidate too.
    const uint16_t a = tcpstatesd::test::local_port(listener_a),
                   b = tcpstatesd::test::local_port(listener_b);
    const std::string both = std::to_string(a) + ", " + std::to_string(b);
    TempDir dir;
    dir.write("c.pem", kTestCertificatePem);
    dir.write("k.pem", kTestKeyPem);
    tcpstatesd::DaemonOptions options;
    options.config_path = dir.write(
        "tcpstatesd.yaml", "filters:\n  local_ports: [" + std::to_string(a) +
                               "]\nmetrics:\n  duration_buckets_seconds: [0.001, 1, 60]\n"
                               "labels:\n  port:\n    families: [transitions, state_durations]\n"
                               "    ports: [" +
                               both + "]\n  cgroup:\n    families: []\n");
    // "u" / "p", bcrypt cost 4.
    options.web_config_path = dir.write(
        "web.yml",
        "basic_auth_users:\n  u: $2y$04$hRz6DmgaX1jsF1RfEBWzPerVc4c27f/pMjnuVp0G.9BwMc7zUkq7e\n");
    tcpstatesd::Settings running = tcpstatesd::load_settings(options);
    const tcpstatesd::Config& config = running.config;

    auto registry = std::make_shared<prometheus::Registry>();
    tcpstatesd::SelfMetrics self_metrics(*registry);
    tcpstatesd::BpfOptions kernel;
    kernel.event_details = false;
    kernel.filters = config.filters;
    kernel.labels = tcpstatesd::tuple_label_settings(config.labels);
    kernel.duration_bounds_ns = tcpstatesd::bounds_ns(config.metrics.duration_buckets);
    kernel.handshake_rtt_bounds_ns = tcpstatesd::bounds_ns(config.metrics.handshake_rtt_buckets);
    kernel.tuple_table_size = 1024;
    kernel.duration_table_size = 256;
    tcpstatesd::BpfProgram program(kernel);
    tcpstatesd::CountTables tables(program, kernel.tuple_table_size, kernel.duration_table_size);
    tcpstatesd::CgroupNames cgroups;
    tcpstatesd::TupleLabeler labeler(config.labels, cgroups);
    tcpstatesd::SeriesBudget budget(*registry, config.labels.max_series);
    auto metrics = std::make_shared<tcpstatesd::CountedMetrics>(
        program, tables, labeler, budget, config.labels, tcpstatesd::histogram_buckets(config));
    tcpstatesd::CountUpkeep upkeep(program, *metrics, config.metrics.socket_walk_cpu_percent);
    tcpstatesd::HttpServerOptions http;
    http.listen_addresses = {
        tcpstatesd::parse_listen_address("127.0.0.1:0", tcpstatesd::PortZero::Allowed)};
    http.security = running.web;
    http.max_threads = 1;
    tcpstatesd::HttpServer server(
        http, registry, [] { return true; }, [] { return true; }, {metrics});
    const uint16_t http_port = server.bound_ports().at(0);
    tcpstatesd::Reloader reloader(options, std::move(running),
                                  {program, *metrics, upkeep, server, self_metrics});

    // Everything live changes: the local filter's update succeeds and must be undone when the
    // remote one's first port is refused.
    REQUIRE(bpf_map_freeze(own_map("remote_ports")) == 0);
    dir.write("tcpstatesd.yaml", "filters:\n  local_ports: [" + std::to_string(b) +
                                     "]\n  remote_ports: [9]\nmetrics:\n"
                                     "  duration_buckets_seconds: [0.5, 2]\n"
                                     "labels:\n  port:\n    families: []\n"
                                     "  cgroup:\n    families: []\n");
    // TLS on, and "u" / "q".
    dir.write("web.yml",
              "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n"
              "  u: $2y$04$hRz6DmgaX1jsF1RfEBWzPebd2TymSZMkGCRq1nsJUspM3rdnYK2.2\n");
    reloader.reload();

    CHECK(gauge(*registry, "tcpstatesd_config_last_reload_successful") == 0);
    CHECK(ports_in(own_map("local_ports")) == std::set<uint16_t>{a});
    CHECK(ports_in(own_map("remote_ports")).empty());
    // Plain HTTP, the old user.
    const std::string old_user = "Authorization: Basic dTpw\r\n";  // u:p
    const std::string new_user = "Authorization: Basic dTpx\r\n";  // u:q
    CHECK(tcpstatesd::test::request("127.0.0.1", http_port, "GET", "/-/ready", old_user).status ==
          200);
    CHECK(tcpstatesd::test::request("127.0.0.1", http_port, "GET", "/-/ready", new_user).status ==
          401);
    // The filters in force: a connection to b is not counted, one to a is, under its port
    // (the labels in force) and with the old buckets. The programs count as the sockets change
    // state, so b's transitions would be in the tables when its connection is done.
    start_listening(listener_b);
    run_connection(AF_INET, listener_b);
    start_listening(listener_a);
    run_connection(AF_INET, listener_a);
    const auto families = metrics->Collect();
    CHECK(samples_for_port(families, "tcpstates_transitions_total", a) > 0);
    CHECK(samples_for_port(families, "tcpstates_transitions_total", b) == 0);
    CHECK(duration_bounds(families) == std::vector<double>{0.001, 1, 60, INFINITY});
}

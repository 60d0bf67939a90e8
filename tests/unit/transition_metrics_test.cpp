#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <cerrno>

#include <catch2/catch.hpp>

#include "metrics/transition_metrics.hpp"

using namespace tcpstatesd;

namespace {

tcpstates_transition transition(unsigned family, unsigned from, unsigned to, double seconds,
                                bool start_known = true) {
    tcpstates_transition e{};
    e.family = static_cast<uint16_t>(family);
    e.old_state = static_cast<uint8_t>(from);
    e.new_state = static_cast<uint8_t>(to);
    e.duration_ns = start_known ? static_cast<uint64_t>(seconds * 1e9 + 0.5) : 0;
    e.flags = start_known ? 0 : TCPSTATES_EVENT_START_UNKNOWN;
    return e;
}

std::string scrape(prometheus::Registry& registry) {
    return prometheus::TextSerializer().Serialize(registry.Collect());
}

bool has_line(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
}

// No labels: the families as they are without labels.* configured.
LabelsConfig no_labels() {
    LabelsConfig config;
    config.port.families = {};
    config.cgroup.families = {};
    return config;
}

struct Fixture {
    prometheus::Registry registry;
    CgroupNames cgroup_names{"/nonexistent"};
    ListeningPorts listening;
    SocketLabels socket_labels{no_labels(), cgroup_names, listening};
    SeriesBudget budget{registry, 10000};
    TransitionMetrics metrics{registry, {0.001, 0.01, 0.1}, no_labels(), socket_labels, budget};
};

}  // namespace

TEST_CASE_METHOD(Fixture, "aggregation: transitions are counted by family, from and to") {
    metrics.on_transition(transition(AF_INET, TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED, 0.002));
    metrics.on_transition(transition(AF_INET, TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED, 0.003));
    metrics.on_transition(transition(AF_INET6, TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED, 0.003));
    const std::string text = scrape(registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="SYN_SENT",to_state="ESTABLISHED"} 2)"));
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv6",from_state="SYN_SENT",to_state="ESTABLISHED"} 1)"));
    CHECK(has_line(text, "tcpstatesd_events_received_total 3"));
    CHECK(text.find("# HELP tcpstates_transitions_total ") != std::string::npos);
    CHECK(text.find("# TYPE tcpstates_state_duration_seconds histogram") != std::string::npos);
}

TEST_CASE_METHOD(Fixture,
                 "aggregation: common transitions are exported at zero before they happen") {
    const std::string text = scrape(registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv6",from_state="LAST_ACK",to_state="CLOSE"} 0)"));
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="ESTABLISHED",state="SYN_SENT"} 0)"));
    // A transition that never has a known start gets no histogram.
    CHECK(text.find(R"(next_state="SYN_SENT",state="CLOSE")") == std::string::npos);
}

TEST_CASE_METHOD(Fixture,
                 "aggregation: durations land in cumulative buckets, boundaries inclusive") {
    metrics.on_transition(
        transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.001));  // == first bound
    metrics.on_transition(transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.0105));
    metrics.on_transition(
        transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 5.0));  // above every bound
    const std::string text = scrape(registry);
    const std::string labels = R"(family="ipv4",next_state="FIN_WAIT1",state="ESTABLISHED")";
    CHECK(
        has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="0.001"} 1)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="0.01"} 1)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="0.1"} 2)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="+Inf"} 3)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_count{" + labels + "} 3"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_sum{" + labels + "} 5.0115"));
}

TEST_CASE_METHOD(Fixture, "aggregation: unknown-start transitions are counted, never observed") {
    metrics.on_transition(transition(AF_INET, TCPSTATES_CLOSE, TCPSTATES_SYN_SENT, 0, false));
    metrics.on_transition(transition(AF_INET, TCPSTATES_LISTEN, TCPSTATES_SYN_RECV, 0, false));
    metrics.on_transition(transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0,
                                     false));  // e.g. older than the daemon
    const std::string text = scrape(registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",to_state="FIN_WAIT1"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstatesd_transitions_unknown_start_total{family="ipv4",from_state="ESTABLISHED",to_state="FIN_WAIT1"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstatesd_transitions_unknown_start_total{family="ipv4",from_state="CLOSE",to_state="SYN_SENT"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="FIN_WAIT1",state="ESTABLISHED"} 0)"));
}

TEST_CASE_METHOD(Fixture, "aggregation: out-of-range states are reported as UNKNOWN") {
    metrics.on_transition(transition(AF_INET, 200, TCPSTATES_ESTABLISHED, 0.1));
    CHECK(has_line(
        scrape(registry),
        R"(tcpstates_transitions_total{family="ipv4",from_state="UNKNOWN",to_state="ESTABLISHED"} 1)"));
}

TEST_CASE_METHOD(Fixture, "aggregation: new buckets restart only the duration histograms") {
    metrics.on_transition(transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.05));
    metrics.set_duration_buckets({0.5, 1.0});
    metrics.on_transition(transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.7));
    const std::string text = scrape(registry);
    const std::string labels = R"(family="ipv4",next_state="FIN_WAIT1",state="ESTABLISHED")";
    CHECK(has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="0.5"} 0)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_bucket{" + labels + R"(,le="1"} 1)"));
    CHECK(has_line(text, "tcpstates_state_duration_seconds_count{" + labels + "} 1"));
    CHECK(text.find(R"(le="0.1")") == std::string::npos);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",to_state="FIN_WAIT1"} 2)"));
    // The common series come back at zero under the new buckets.
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv6",next_state="CLOSE",state="LAST_ACK"} 0)"));
}

namespace {

// A passively opened socket's transition on `port` (the service port: listened on).
tcpstates_transition on_port(uint16_t port, unsigned from, unsigned to, double seconds) {
    tcpstates_transition t = transition(AF_INET, from, to, seconds);
    t.origin = TCPSTATES_ORIGIN_PASSIVE;
    t.lport = port;
    t.rport = 40000;
    return t;
}

// `port` on the transitions, both labels on nothing else unless a test says so.
LabelsConfig port_on_transitions(uint32_t max_series) {
    LabelsConfig config = no_labels();
    config.port.families.transitions = true;
    config.max_series = max_series;
    return config;
}

struct LabelledFixture {
    explicit LabelledFixture(LabelsConfig config)
        : labels(config, cgroup_names, listening),
          budget(registry, config.max_series),
          metrics(registry, {0.001, 0.01, 0.1}, config, labels, budget) {}

    prometheus::Registry registry;
    CgroupNames cgroup_names{"/nonexistent"};
    ListeningPorts listening;
    SocketLabels labels;
    SeriesBudget budget;
    TransitionMetrics metrics;
};

}  // namespace

TEST_CASE("labels: transitions carry the port where configured, durations do not") {
    LabelledFixture f(port_on_transitions(100));
    f.metrics.on_transition(on_port(8080, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    f.metrics.on_transition(on_port(8081, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    const std::string text = scrape(f.registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",port="8080",to_state="FIN_WAIT1"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",port="8081",to_state="FIN_WAIT1"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="FIN_WAIT1",state="ESTABLISHED"} 2)"));
    CHECK(has_line(text, "tcpstatesd_labelled_series 2"));
    CHECK(has_line(text, R"(tcpstatesd_label_values{label="port"} 2)"));
}

TEST_CASE("labels: series beyond max_series are folded into other and counted") {
    LabelledFixture f(port_on_transitions(3));
    for (uint16_t port = 9000; port < 9005; ++port)
        f.metrics.on_transition(on_port(port, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    const std::string text = scrape(f.registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",port="9002",to_state="FIN_WAIT1"} 1)"));
    CHECK(text.find(R"(port="9003")") == std::string::npos);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",port="other",to_state="FIN_WAIT1"} 2)"));
    CHECK(has_line(text, "tcpstatesd_labelled_series 3"));
    CHECK(has_line(text, "tcpstatesd_labelled_series_limit 3"));
    CHECK(has_line(text,
                   R"(tcpstatesd_series_overflows_total{metric="tcpstates_transitions_total"} 2)"));
}

TEST_CASE("labels: a histogram series costs its buckets, +Inf, sum and count") {
    LabelsConfig config = port_on_transitions(7);
    config.port.families.state_durations = true;
    LabelledFixture f(config);
    // 1 transition series + 6 histogram samples (3 buckets + 3) = 7: the cap exactly.
    f.metrics.on_transition(on_port(8080, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    f.metrics.on_transition(on_port(8081, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    const std::string text = scrape(f.registry);
    CHECK(has_line(text, "tcpstatesd_labelled_series 7"));
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="FIN_WAIT1",port="8080",state="ESTABLISHED"} 1)"));
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="FIN_WAIT1",port="other",state="ESTABLISHED"} 1)"));
}

TEST_CASE("labels: a reload keeps the counts of the families whose labels stay") {
    LabelsConfig config = port_on_transitions(100);
    config.port.families.state_durations = true;
    LabelledFixture f(config);
    f.metrics.on_transition(on_port(8080, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    config.port.families.state_durations = false;
    config.max_series = 50;
    f.metrics.set_labels(config);
    f.metrics.on_transition(on_port(8080, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    const std::string text = scrape(f.registry);
    CHECK(has_line(
        text,
        R"(tcpstates_transitions_total{family="ipv4",from_state="ESTABLISHED",port="8080",to_state="FIN_WAIT1"} 2)"));
    // The histogram lost its label: it starts over without it.
    CHECK(has_line(
        text,
        R"(tcpstates_state_duration_seconds_count{family="ipv4",next_state="FIN_WAIT1",state="ESTABLISHED"} 1)"));
    CHECK(text.find(R"(port="8080",state=)") == std::string::npos);
    CHECK(has_line(text, "tcpstatesd_labelled_series 1"));
    CHECK(has_line(text, "tcpstatesd_labelled_series_limit 50"));
}

namespace {

tcpstates_transition packet(unsigned kind, unsigned state) {
    tcpstates_transition t = transition(AF_INET, state, state, 0);
    t.kind = static_cast<uint8_t>(kind);
    t.flags = 0;
    return t;
}

tcpstates_transition closing(unsigned from, unsigned error) {
    tcpstates_transition t = transition(AF_INET, from, TCPSTATES_CLOSE, 0.002);
    t.close_error = static_cast<uint8_t>(error);
    return t;
}

}  // namespace

TEST_CASE_METHOD(Fixture, "aggregation: every transition to CLOSE is a close, with its reason") {
    metrics.on_transition(closing(TCPSTATES_SYN_SENT, ECONNREFUSED));
    metrics.on_transition(closing(TCPSTATES_SYN_SENT, ETIMEDOUT));
    metrics.on_transition(closing(TCPSTATES_SYN_SENT, 0));
    metrics.on_transition(closing(TCPSTATES_ESTABLISHED, ECONNRESET));
    metrics.on_transition(closing(TCPSTATES_LAST_ACK, 0));
    metrics.on_transition(transition(AF_INET, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1, 0.002));
    const std::string text = scrape(registry);
    for (
        const char* line : {
            R"(tcpstates_closes_total{family="ipv4",from_state="SYN_SENT",reason="refused"} 1)",
            R"(tcpstates_closes_total{family="ipv4",from_state="SYN_SENT",reason="timeout"} 1)",
            R"(tcpstates_closes_total{family="ipv4",from_state="SYN_SENT",reason="canceled"} 1)",
            R"(tcpstates_closes_total{family="ipv4",from_state="ESTABLISHED",reason="reset"} 1)",
            R"(tcpstates_closes_total{family="ipv4",from_state="LAST_ACK",reason="normal"} 1)",
            R"(tcpstates_transitions_total{family="ipv4",from_state="SYN_SENT",to_state="CLOSE"} 3)",
        })
        CHECK(has_line(text, line));
    CHECK(text.find(
              R"(tcpstates_closes_total{family="ipv4",from_state="ESTABLISHED",reason="normal")") ==
          std::string::npos);
}

TEST_CASE_METHOD(Fixture,
                 "aggregation: resets and retransmissions are counted in their state, "
                 "never as transitions") {
    metrics.on_transition(packet(TCPSTATES_KIND_RESET_SENT, TCPSTATES_CLOSE));
    metrics.on_transition(packet(TCPSTATES_KIND_RESET_SENT, TCPSTATES_ESTABLISHED));
    metrics.on_transition(packet(TCPSTATES_KIND_RESET_RECEIVED, TCPSTATES_SYN_SENT));
    metrics.on_transition(packet(TCPSTATES_KIND_RETRANSMIT, TCPSTATES_SYN_SENT));
    metrics.on_transition(packet(TCPSTATES_KIND_RETRANSMIT, TCPSTATES_SYN_SENT));
    const std::string text = scrape(registry);
    for (const char* line : {
             R"(tcpstates_resets_total{direction="sent",family="ipv4",state="CLOSE"} 1)",
             R"(tcpstates_resets_total{direction="sent",family="ipv4",state="ESTABLISHED"} 1)",
             R"(tcpstates_resets_total{direction="received",family="ipv4",state="SYN_SENT"} 1)",
             R"(tcpstates_retransmits_total{family="ipv4",state="SYN_SENT"} 2)",
             "tcpstatesd_events_received_total 5",
         })
        CHECK(has_line(text, line));
    CHECK(text.find(R"(to_state="CLOSE"} 1)") == std::string::npos);
    CHECK(text.find("tcpstates_closes_total{") == std::string::npos);
    CHECK(text.find("tcpstatesd_transitions_unknown_start_total{") == std::string::npos);
}

TEST_CASE(
    "labels: closes, resets and retransmissions carry the port where configured, "
    "within the same cap") {
    LabelsConfig config = no_labels();
    config.port.families.closes = true;
    config.port.families.retransmits = true;
    config.max_series = 2;
    LabelledFixture f(config);
    tcpstates_transition refused = on_port(5432, TCPSTATES_SYN_SENT, TCPSTATES_CLOSE, 0.001);
    refused.close_error = ECONNREFUSED;
    f.metrics.on_transition(refused);
    tcpstates_transition retransmit =
        on_port(5432, TCPSTATES_ESTABLISHED, TCPSTATES_ESTABLISHED, 0);
    retransmit.kind = TCPSTATES_KIND_RETRANSMIT;
    f.metrics.on_transition(retransmit);
    tcpstates_transition reset = retransmit;
    reset.kind = TCPSTATES_KIND_RESET_RECEIVED;
    f.metrics.on_transition(reset);
    retransmit.lport = 5433;  // a third labelled series: over the cap
    f.metrics.on_transition(retransmit);
    const std::string text = scrape(f.registry);
    for (
        const char* line : {
            R"(tcpstates_closes_total{family="ipv4",from_state="SYN_SENT",port="5432",reason="refused"} 1)",
            R"(tcpstates_retransmits_total{family="ipv4",port="5432",state="ESTABLISHED"} 1)",
            R"(tcpstates_retransmits_total{family="ipv4",port="other",state="ESTABLISHED"} 1)",
            R"(tcpstates_resets_total{direction="received",family="ipv4",state="ESTABLISHED"} 1)",
            R"(tcpstatesd_series_overflows_total{metric="tcpstates_retransmits_total"} 1)",
            "tcpstatesd_labelled_series 2",
        })
        CHECK(has_line(text, line));
}

#include "metrics/transition_metrics.hpp"

#include <sys/socket.h>

#include <string>
#include <utility>

#include "kernel/close_reason.hpp"
#include "kernel/tcp_state.hpp"

namespace tcpstatesd {

namespace {

// The transitions every ordinary connection makes (see docs/metrics.md). They are exported
// from the start, at zero, so that rate() and increase() see their first increment.
constexpr std::pair<unsigned, unsigned> kCommonTransitions[] = {
    {TCPSTATES_CLOSE, TCPSTATES_SYN_SENT},
    {TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED},
    {TCPSTATES_SYN_SENT, TCPSTATES_CLOSE},  // refused, timed out
    {TCPSTATES_CLOSE, TCPSTATES_LISTEN},
    {TCPSTATES_LISTEN, TCPSTATES_CLOSE},
    {TCPSTATES_LISTEN, TCPSTATES_SYN_RECV},  // a child socket is born
    {TCPSTATES_SYN_RECV, TCPSTATES_ESTABLISHED},
    {TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1},
    {TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_WAIT},
    {TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE},  // reset
    {TCPSTATES_FIN_WAIT1, TCPSTATES_FIN_WAIT2},
    {TCPSTATES_FIN_WAIT2, TCPSTATES_CLOSE},
    {TCPSTATES_CLOSE_WAIT, TCPSTATES_LAST_ACK},
    {TCPSTATES_LAST_ACK, TCPSTATES_CLOSE},
};

// Both old and new state are known only when the transition did not start the socket's
// life in our table: CLOSE -> * (a new socket) and LISTEN -> SYN_RECV (a child cloned from
// its listener) never have a start, so they get no histogram.
bool can_have_duration(unsigned from, unsigned to) {
    return from != TCPSTATES_CLOSE && !(from == TCPSTATES_LISTEN && to == TCPSTATES_SYN_RECV);
}

unsigned family_index(unsigned family) {
    return family == AF_INET6 ? 1 : 0;
}
unsigned family_of_index(unsigned index) {
    return index == 1 ? AF_INET6 : AF_INET;
}
unsigned state_index(unsigned state) {
    return state <= TCPSTATES_MAX_STATE ? state : 0;
}

prometheus::Family<prometheus::Counter>& counter_family(prometheus::Registry& registry,
                                                        LabelledMetric metric, const char* help) {
    return prometheus::BuildCounter()
        .Name(std::string(metric_name(metric)))
        .Help(help)
        .Register(registry);
}

// The `direction` of a reset: Key::from of tcpstates_resets_total.
constexpr unsigned kResetSent = 0, kResetReceived = 1;

}  // namespace

// family: 1 bit, from and to: 4 bits each, port: 24 bits, cgroup: the rest (value indexes stay
// below kMaxLabelValues plus the reserved ones).
uint64_t TransitionMetrics::Key::packed() const {
    return uint64_t(family) | uint64_t(from) << 1 | uint64_t(to) << 5 | uint64_t(port) << 9 |
           uint64_t(cgroup) << 33;
}

TransitionMetrics::Key TransitionMetrics::Key::unpacked(uint64_t packed) {
    return {unsigned(packed & 1), unsigned(packed >> 1 & 0xf), unsigned(packed >> 5 & 0xf),
            uint32_t(packed >> 9 & 0xffffff), uint32_t(packed >> 33)};
}

TransitionMetrics::TransitionMetrics(prometheus::Registry& registry,
                                     std::vector<double> duration_buckets,
                                     const LabelsConfig& config, SocketLabels& labels,
                                     SeriesBudget& budget)
    : labels_(labels),
      budget_(budget),
      config_(config),
      transitions_{counter_family(registry, LabelledMetric::Transitions,
                                  "TCP state transitions, by address family, previous state "
                                  "(from_state) and new state (to_state)."),
                   LabelledMetric::Transitions,
                   &LabelledFamilies::transitions,
                   [](const Key& key, prometheus::Labels& named) {
                       named.emplace("from_state", std::string(tcp_state_name(key.from)));
                       named.emplace("to_state", std::string(tcp_state_name(key.to)));
                   },
                   {}},
      closes_{counter_family(registry, LabelledMetric::Closes,
                             "Transitions to CLOSE, by the state left (from_state) and why "
                             "(reason: normal, refused, timeout, reset, unreachable, canceled, "
                             "other)."),
              LabelledMetric::Closes,
              &LabelledFamilies::closes,
              [](const Key& key, prometheus::Labels& named) {
                  named.emplace("from_state", std::string(tcp_state_name(key.from)));
                  named.emplace("reason", std::string(close_reason_name(kCloseReasons[key.to])));
              },
              {}},
      resets_{counter_family(registry, LabelledMetric::Resets,
                             "TCP resets (RST) sent and received, by the socket's state then "
                             "(CLOSE: sent for a segment that found no socket)."),
              LabelledMetric::Resets,
              &LabelledFamilies::resets,
              [](const Key& key, prometheus::Labels& named) {
                  named.emplace("direction", key.from == kResetReceived ? "received" : "sent");
                  named.emplace("state", std::string(tcp_state_name(key.to)));
              },
              {}},
      retransmits_{counter_family(registry, LabelledMetric::Retransmits,
                                  "TCP retransmissions (each may carry several segments), by "
                                  "the socket's state (SYN_SENT: the SYN, SYN_RECV: the "
                                  "SYN-ACK)."),
                   LabelledMetric::Retransmits,
                   &LabelledFamilies::retransmits,
                   [](const Key& key, prometheus::Labels& named) {
                       named.emplace("state", std::string(tcp_state_name(key.to)));
                   },
                   {}},
      unknown_start_(prometheus::BuildCounter()
                         .Name("tcpstatesd_transitions_unknown_start_total")
                         .Help("Transitions whose start was not seen (new socket, child "
                               "socket, socket older than the daemon, or evicted from the "
                               "socket table): counted, never observed as a duration.")
                         .Register(registry)),
      durations_family_(prometheus::BuildHistogram()
                            .Name(std::string(metric_name(LabelledMetric::StateDurations)))
                            .Help("Time a TCP socket spent in `state` before it moved to "
                                  "`next_state`.")
                            .Register(registry)),
      events_received_(prometheus::BuildCounter()
                           .Name("tcpstatesd_events_received_total")
                           .Help("Records (transitions, resets, retransmissions) delivered by "
                                 "the kernel to the daemon.")
                           .Register(registry)
                           .Add({})),
      buckets_(std::move(duration_buckets)) {
    auto& values = prometheus::BuildGauge()
                       .Name("tcpstatesd_label_values")
                       .Help("Values a label has now, besides \"other\" and \"unknown\".")
                       .Register(registry);
    auto& limits = prometheus::BuildGauge()
                       .Name("tcpstatesd_label_values_limit")
                       .Help("The label's max_values: the cap on tcpstatesd_label_values.")
                       .Register(registry);
    auto& overflows = prometheus::BuildCounter()
                          .Name("tcpstatesd_label_value_overflows_total")
                          .Help(
                              "Events counted under \"other\" because their value found the "
                              "label's max_values full.")
                          .Register(registry);
    auto& replaced = prometheus::BuildCounter()
                         .Name("tcpstatesd_label_values_replaced_total")
                         .Help(
                             "Values of cgroups removed or ports no longer listened on that "
                             "made room for a new value (their series removed).")
                         .Register(registry);
    for (Label label : kLabels) {
        const prometheus::Labels which{{"label", std::string(label_name(label))}};
        accounting(label) = {&values.Add(which), &limits.Add(which), &overflows.Add(which),
                             &replaced.Add(which)};
    }
    labels_.on_eviction([this](Label label, uint32_t index) { remove_value(label, index); });
    update_label_limits();
    export_common_series();
}

TransitionMetrics::Key TransitionMetrics::key_for(bool port, bool cgroup, const Key& full) const {
    return {full.family, full.from, full.to, port ? full.port : LabelValues::kOther,
            cgroup ? full.cgroup : LabelValues::kOther};
}

prometheus::Labels TransitionMetrics::labels_of(const Key& key, bool port, bool cgroup) const {
    prometheus::Labels labels;
    for (Label label : kLabels)
        if (label == Label::Port ? port : cgroup)
            labels.emplace(std::string(label_name(label)),
                           std::string(labels_.name(label, key.value(label))));
    labels.emplace("family", std::string(family_name(family_of_index(key.family))));
    return labels;
}

template <typename Metric>
std::pair<TransitionMetrics::Key, Metric*> TransitionMetrics::place(
    std::unordered_map<uint64_t, Metric*>& series, bool port, bool cgroup, const Key& full,
    uint64_t cost, LabelledMetric metric) {
    Key key = key_for(port, cgroup, full);
    if (auto found = series.find(key.packed()); found != series.end()) return {key, found->second};
    if (key.labelled() && !budget_.reserve(cost, metric)) {
        key = key_for(false, false, key);
        if (auto found = series.find(key.packed()); found != series.end())
            return {key, found->second};
    }
    return {key, nullptr};
}

prometheus::Counter& TransitionMetrics::counter(Counters& counters, const Key& full) {
    const bool port = carries(Label::Port, counters.labelled);
    const bool cgroup = carries(Label::Cgroup, counters.labelled);
    const auto [key, existing] = place(counters.series, port, cgroup, full, 1, counters.metric);
    if (existing) return *existing;
    prometheus::Labels labels = labels_of(key, port, cgroup);
    counters.name(key, labels);
    prometheus::Counter& counter = counters.family.Add(labels);
    counters.series.emplace(key.packed(), &counter);
    return counter;
}

prometheus::Histogram& TransitionMetrics::duration(const Key& full) {
    const bool port = carries(Label::Port, &LabelledFamilies::state_durations);
    const bool cgroup = carries(Label::Cgroup, &LabelledFamilies::state_durations);
    const auto [key, existing] =
        place(durations_, port, cgroup, full, histogram_cost(), LabelledMetric::StateDurations);
    if (existing) return *existing;
    prometheus::Labels labels = labels_of(key, port, cgroup);
    labels.emplace("state", std::string(tcp_state_name(key.from)));
    labels.emplace("next_state", std::string(tcp_state_name(key.to)));
    prometheus::Histogram& histogram = durations_family_.Add(labels, buckets_);
    durations_.emplace(key.packed(), &histogram);
    return histogram;
}

void TransitionMetrics::export_common_series() {
    const bool labelled_transitions =
        config_.port.families.transitions || config_.cgroup.families.transitions;
    const bool labelled_durations =
        config_.port.families.state_durations || config_.cgroup.families.state_durations;
    for (unsigned f = 0; f < kFamilies; ++f)
        for (auto [from, to] : kCommonTransitions) {
            const Key key{f, from, to, LabelValues::kOther, LabelValues::kOther};
            if (!labelled_transitions) counter(transitions_, key);
            if (!labelled_durations && can_have_duration(from, to)) duration(key);
        }
}

void TransitionMetrics::on_transition(const tcpstates_transition& record) {
    events_received_.Increment();
    const SocketLabels::Values values = labels_.of(record);
    if (values.port_refused) accounting(Label::Port).overflows->Increment();
    if (values.cgroup_refused) accounting(Label::Cgroup).overflows->Increment();
    if (values.admitted) update_label_gauges();
    const unsigned family = family_index(record.family);
    const unsigned state = state_index(record.new_state);
    switch (record.kind) {
        case TCPSTATES_KIND_RESET_SENT:
        case TCPSTATES_KIND_RESET_RECEIVED: {
            const unsigned direction =
                record.kind == TCPSTATES_KIND_RESET_RECEIVED ? kResetReceived : kResetSent;
            counter(resets_, {family, direction, state, values.port, values.cgroup}).Increment();
            return;
        }
        case TCPSTATES_KIND_RETRANSMIT:
            counter(retransmits_, {family, 0, state, values.port, values.cgroup}).Increment();
            return;
        default:  // a transition (EventSource delivers no other kind)
            count_transition(
                record, {family, state_index(record.old_state), state, values.port, values.cgroup});
    }
}

void TransitionMetrics::count_transition(const tcpstates_transition& transition, const Key& key) {
    counter(transitions_, key).Increment();
    if (key.to == TCPSTATES_CLOSE) {
        const auto reason = close_reason(key.from, transition.close_error);
        counter(closes_,
                {key.family, key.from, static_cast<unsigned>(reason), key.port, key.cgroup})
            .Increment();
    }
    if (transition.flags & TCPSTATES_EVENT_START_UNKNOWN) {
        prometheus::Counter*& unknown = unknown_start_slots_[key.family][key.from][key.to];
        if (!unknown)
            unknown = &unknown_start_.Add({{"family", std::string(family_name(transition.family))},
                                           {"from_state", std::string(tcp_state_name(key.from))},
                                           {"to_state", std::string(tcp_state_name(key.to))}});
        unknown->Increment();
        return;
    }
    duration(key).Observe(static_cast<double>(transition.duration_ns) * 1e-9);
}

void TransitionMetrics::update_label_limits() {
    accounting(Label::Port).limit->Set(config_.port.max_values);
    accounting(Label::Cgroup).limit->Set(config_.cgroup.max_values);
}

void TransitionMetrics::update_label_gauges() {
    for (Label label : kLabels)
        accounting(label).values->Set(static_cast<double>(labels_.values(label).admitted()));
}

template <typename Metric, typename Select>
void TransitionMetrics::remove_series(prometheus::Family<Metric>& family,
                                      std::unordered_map<uint64_t, Metric*>& series, uint64_t cost,
                                      Select remove) {
    for (auto it = series.begin(); it != series.end();) {
        const Key key = Key::unpacked(it->first);
        if (!remove(key)) {
            ++it;
            continue;
        }
        family.Remove(it->second);
        if (key.labelled()) budget_.release(cost);
        it = series.erase(it);
    }
}

void TransitionMetrics::remove_value(Label label, uint32_t index) {
    const auto with_value = [label, index](const Key& key) { return key.value(label) == index; };
    for (Counters* counters : counter_families())
        remove_series(counters->family, counters->series, 1, with_value);
    remove_series(durations_family_, durations_, histogram_cost(), with_value);
    accounting(label).replaced->Increment();
}

void TransitionMetrics::remove_all(Counters& counters) {
    remove_series(counters.family, counters.series, 1, [](const Key&) { return true; });
}

void TransitionMetrics::remove_all_durations() {
    remove_series(durations_family_, durations_, histogram_cost(), [](const Key&) { return true; });
}

void TransitionMetrics::set_duration_buckets(std::vector<double> buckets) {
    if (buckets == buckets_) return;
    remove_all_durations();
    buckets_ = std::move(buckets);
    export_common_series();
}

void TransitionMetrics::set_labels(const LabelsConfig& config) {
    const auto changes = [&](bool LabelledFamilies::*family) {
        return config.port.families.*family != config_.port.families.*family ||
               config.cgroup.families.*family != config_.cgroup.families.*family;
    };
    for (Counters* counters : counter_families())
        if (changes(counters->labelled)) remove_all(*counters);
    if (changes(&LabelledFamilies::state_durations)) remove_all_durations();
    config_ = config;
    labels_.configure(config);
    budget_.set_limit(config.max_series);
    update_label_limits();
    export_common_series();
}

}  // namespace tcpstatesd

#include "metrics/counted_metrics.hpp"

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernel/bpf_program.hpp"
#include "kernel/close_reason.hpp"
#include "kernel/tcp_state.hpp"
#include "metrics/metric_family.hpp"
#include "metrics/native_histogram.hpp"

namespace tcpstatesd {

namespace {

// The transitions every ordinary connection makes (see docs/metrics.md). A family without
// labels exports them from the start, at zero, so that rate() and increase() see their first
// increment.
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

// The states `ss -tan` reports a socket in, each exported for both families even at 0. CLOSE
// sockets have no line; request sockets (NEW_SYN_RECV) are reported as SYN_RECV, as ss does.
constexpr unsigned kSocketStates[] = {
    TCPSTATES_ESTABLISHED, TCPSTATES_SYN_SENT,  TCPSTATES_SYN_RECV,   TCPSTATES_FIN_WAIT1,
    TCPSTATES_FIN_WAIT2,   TCPSTATES_TIME_WAIT, TCPSTATES_CLOSE_WAIT, TCPSTATES_LAST_ACK,
    TCPSTATES_LISTEN,      TCPSTATES_CLOSING,
};

// A transition from CLOSE (a new socket) or a child's first (LISTEN -> SYN_RECV, cloned from its
// listener) never has a start: no histogram.
bool can_have_duration(unsigned from, unsigned to) {
    return from != TCPSTATES_CLOSE && !(from == TCPSTATES_LISTEN && to == TCPSTATES_SYN_RECV);
}

constexpr const char* kSocketsHelp =
    "TCP sockets now in each state, as ss -tan counts them: every socket of the daemon's network "
    "namespace (TIME_WAIT and request sockets as of the last walk of the sockets), and those of "
    "other namespaces seen changing state since the start. Not limited by the filters.";

// The configuration's flag of each labelled metric, in LabelledMetric's order (the three
// queue families share listen_queues).
constexpr bool LabelledFamilies::*kFamilyOfMetric[] = {
    &LabelledFamilies::transitions,     &LabelledFamilies::state_durations,
    &LabelledFamilies::sockets,         &LabelledFamilies::closes,
    &LabelledFamilies::resets,          &LabelledFamilies::retransmits,
    &LabelledFamilies::state_oldest,    &LabelledFamilies::listen_queues,
    &LabelledFamilies::listen_queues,   &LabelledFamilies::listen_queues,
    &LabelledFamilies::ephemeral_ports, &LabelledFamilies::handshake_rtt,
};
static_assert(std::size(kFamilyOfMetric) == std::size(kLabelledMetrics));

bool carried(const LabelsConfig& config, Label label, LabelledMetric metric) {
    const LabelledFamilies& families =
        label == Label::Port ? config.port.families : config.cgroup.families;
    return families.*kFamilyOfMetric[static_cast<size_t>(metric)];
}

}  // namespace

CountedMetrics::TupleId CountedMetrics::tuple_id(const tcpstates_tuple_key& key) {
    TupleId id{};
    std::memcpy(id.data(), &key, sizeof key);
    return id;
}

// Multiplying by an odd constant spreads the small fields (indexes, states) over the word.
constexpr uint64_t kSpread = 0x9e3779b97f4a7c15ULL;

size_t CountedMetrics::SeriesKeyHash::operator()(const SeriesKey& key) const noexcept {
    const uint64_t fields = uint64_t(key.metric) | uint64_t(key.ipv6) << 8 | uint64_t(key.a) << 16 |
                            uint64_t(key.b) << 24 | uint64_t(key.port) << 32 |
                            uint64_t(key.reason) << 56;
    return fields * kSpread ^ uint64_t(key.cgroup);
}

size_t CountedMetrics::TupleIdHash::operator()(const TupleId& id) const noexcept {
    return id[0] * kSpread ^ id[1];
}

namespace {

std::string family_label(uint8_t ipv6) {
    return std::string(family_name(ipv6 ? AF_INET6 : AF_INET));
}

std::string state_label(unsigned state) {
    return std::string(tcp_state_name(state));
}

}  // namespace

void CountedMetrics::Histogram::add(const tcpstates_histogram& h) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.buckets[i];
    sum_ns += h.sum_ns;
    native_lost += h.native_lost;
}

void CountedMetrics::Histogram::add(const Histogram& h) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.buckets[i];
    sum_ns += h.sum_ns;
    for (const auto& [index, n] : h.native) native[index] += n;
    native_zero += h.native_zero;
    native_lost += h.native_lost;
}

void CountedMetrics::Histogram::add_native(int32_t index, uint64_t count) {
    if (index == TCPSTATES_NATIVE_ZERO_INDEX)
        native_zero += count;
    else
        native[index] += count;
}

CountedMetrics::CountedMetrics(BpfProgram& program, CountTables& tables, TupleLabeler& labeler,
                               SeriesBudget& budget, const LabelsConfig& labels,
                               HistogramBuckets buckets)
    : program_(program),
      tables_(tables),
      labeler_(labeler),
      budget_(budget),
      labels_(labels),
      buckets_(std::move(buckets)),
      generation_(program.bucket_generation()) {}

TupleLabelSettings tuple_label_settings(const LabelsConfig& labels) {
    TupleLabelSettings settings;
    settings.port = labels.port.families.any();
    settings.cgroup = labels.cgroup.families.any();
    settings.duration_port = labels.port.families.state_durations;
    settings.duration_cgroup = labels.cgroup.families.state_durations;
    settings.handshake_rtt_port = labels.port.families.handshake_rtt;
    settings.handshake_rtt_cgroup = labels.cgroup.families.handshake_rtt;
    settings.listening = labels.port.listening;
    settings.ports = labels.port.ports;
    return settings;
}

std::vector<uint64_t> bounds_ns(const std::vector<double>& buckets_seconds) {
    std::vector<uint64_t> bounds;
    for (double seconds : buckets_seconds) {
        // A bound past what 64 bits of nanoseconds hold (584 years) is +Inf's equal.
        const double ns = seconds * 1e9;
        bounds.push_back(ns >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(ns));
    }
    return bounds;
}

bool CountedMetrics::carries(Label label, LabelledMetric metric) const {
    return carried(labels_, label, metric);
}

uint64_t CountedMetrics::cost(LabelledMetric metric) const {
    // A histogram's samples: its buckets, +Inf, sum and count.
    switch (metric) {
        case LabelledMetric::StateDurations:
            return buckets_.durations.size() + 3;
        case LabelledMetric::HandshakeRtt:
            return buckets_.handshake_rtts.size() + 3;
        default:
            return 1;
    }
}

TupleLabeler::Values CountedMetrics::values_of(const tcpstates_tuple_key& key,
                                               bool may_replace) const {
    const TupleId id = tuple_id(key);
    if (auto known = assigned_.find(id); known != assigned_.end()) return known->second;
    TupleLabeler::Values values;
    std::vector<TupleLabeler::Eviction> evicted;
    if (!(key.flags & TCPSTATES_TUPLE_OVERFLOW)) {
        // Only the labels some family carries take values (and room).
        const bool by_port = labels_.port.families.any();
        const bool by_cgroup = labels_.cgroup.families.any();
        const TupleLabeler::Values found =
            labeler_.values(by_port ? key.port : 0, by_cgroup ? key.cgroup_id : 0,
                            may_replace ? &evicted : nullptr);
        if (by_port) values.port = found.port;
        if (by_cgroup) values.cgroup = found.cgroup;
    }
    // A replaced value's series end, as a removed container's do.
    for (const TupleLabeler::Eviction& gone : evicted)
        remove_series([&](const SeriesKey& series) {
            return (gone.label == Label::Port ? series.port : series.cgroup) == gone.index;
        });
    assigned_.emplace(id, values);
    return values;
}

bool CountedMetrics::wants_replacement(const tcpstates_tuple_key& key) const {
    if ((key.flags & TCPSTATES_TUPLE_OVERFLOW) || assigned_.contains(tuple_id(key))) return false;
    return labeler_.would_replace(labels_.port.families.any() ? key.port : 0,
                                  labels_.cgroup.families.any() ? key.cgroup_id : 0);
}

CountedMetrics::SeriesKey CountedMetrics::series(LabelledMetric metric, uint8_t ipv6, uint8_t a,
                                                 uint8_t b, TupleLabeler::Values values) const {
    return {metric,
            ipv6,
            a,
            b,
            carries(Label::Port, metric) ? values.port : LabelValues::kOther,
            carries(Label::Cgroup, metric) ? values.cgroup : LabelValues::kOther};
}

CountedMetrics::SeriesKey CountedMetrics::place(const SeriesKey& key) const {
    SeriesKey other = key;
    other.port = LabelValues::kOther;
    other.cgroup = LabelValues::kOther;
    if (key == other) return key;
    auto [placed, added] = placements_.try_emplace(key, Placement::Folded);
    if (added && budget_.reserve(cost(key.metric), key.metric))
        placed->second = Placement::Admitted;
    return placed->second == Placement::Admitted ? key : other;
}

void CountedMetrics::add_counts(const tcpstates_tuple_key& key,
                                const tcpstates_tuple_counts& counts,
                                std::map<SeriesKey, uint64_t>& totals) const {
    const TupleLabeler::Values values = values_of(key);
    const uint8_t ipv6 = key.ipv6;
    const auto add = [&](LabelledMetric metric, unsigned a, unsigned b, uint64_t n,
                         uint8_t reason = 0) {
        if (!n) return;
        SeriesKey series_key = series(metric, ipv6, uint8_t(a), uint8_t(b), values);
        series_key.reason = reason;
        totals[place(series_key)] += n;
    };
    for (unsigned from = 0; from < TCPSTATES_STATE_SLOTS; ++from) {
        for (unsigned to = 0; to < TCPSTATES_STATE_SLOTS; ++to)
            add(LabelledMetric::Transitions, from, to, counts.transitions[from][to]);
        for (unsigned reason = 0; reason < TCPSTATES_CLOSE_REASONS; ++reason)
            add(LabelledMetric::Closes, from, reason, counts.closes[from][reason]);
        add(LabelledMetric::Resets, TCPSTATES_RESET_RECEIVED, from,
            counts.resets[TCPSTATES_RESET_RECEIVED][from]);
        // Those whose (state, reason) found no slot.
        add(LabelledMetric::Resets, TCPSTATES_RESET_SENT, from,
            counts.resets[TCPSTATES_RESET_SENT][from], kOtherReason);
        add(LabelledMetric::Retransmits, 0, from, counts.retransmits[from]);
    }
    for (const tcpstates_reset_reason_count& slot : counts.reset_reasons) {
        const auto state = static_cast<unsigned>(slot.key >> 32);
        const auto reason = static_cast<uint32_t>(slot.key);
        if (!slot.key || !tcpstates_state_has_slot(state)) continue;
        const bool named = !program_.reset_reasons().name(reason).empty();
        add(LabelledMetric::Resets, TCPSTATES_RESET_SENT, state, slot.count,
            named ? uint8_t(reason) : kOtherReason);
    }
}

std::optional<CountedMetrics::SeriesKey> CountedMetrics::labelled_series(
    const tcpstates_duration_key& key) const {
    // Histograms of another bucket generation started over with the new buckets.
    if (key.generation != generation_) return std::nullopt;
    tcpstates_tuple_key tuple{};
    tuple.cgroup_id = key.cgroup_id;
    tuple.port = key.port;
    tuple.ipv6 = key.ipv6;
    if (key.kind == TCPSTATES_HISTOGRAM_HANDSHAKE_RTT)
        return place(series(LabelledMetric::HandshakeRtt, key.ipv6, 0, 0, values_of(tuple)));
    if (key.kind == TCPSTATES_HISTOGRAM_DURATION && key.from < TCPSTATES_STATE_SLOTS &&
        key.to < TCPSTATES_STATE_SLOTS)
        return place(
            series(LabelledMetric::StateDurations, key.ipv6, key.from, key.to, values_of(tuple)));
    return std::nullopt;
}

void CountedMetrics::add_labelled_duration(const tcpstates_duration_key& key,
                                           const tcpstates_histogram& h,
                                           std::map<SeriesKey, Histogram>& totals) const {
    if (const std::optional<SeriesKey> series_key = labelled_series(key))
        totals[*series_key].add(h);
}

void CountedMetrics::add_native_bucket(const tcpstates_native_key& key, uint64_t count,
                                       std::map<SeriesKey, Histogram>& totals) const {
    const tcpstates_duration_key& series_key = key.series;
    if (!key.unlabelled) {
        if (const std::optional<SeriesKey> labelled = labelled_series(series_key))
            totals[*labelled].add_native(key.index, count);
        return;
    }
    if (series_key.generation != generation_ || series_key.ipv6 > 1) return;
    if (series_key.kind == TCPSTATES_HISTOGRAM_HANDSHAKE_RTT)
        totals[{LabelledMetric::HandshakeRtt, series_key.ipv6, 0, 0, LabelValues::kOther,
                LabelValues::kOther}]
            .add_native(key.index, count);
    else if (series_key.kind == TCPSTATES_HISTOGRAM_DURATION &&
             series_key.from < TCPSTATES_STATE_SLOTS && series_key.to < TCPSTATES_STATE_SLOTS)
        totals[{LabelledMetric::StateDurations, series_key.ipv6, series_key.from, series_key.to,
                LabelValues::kOther, LabelValues::kOther}]
            .add_native(key.index, count);
}

template <typename Select>
void CountedMetrics::remove_series(Select remove) const {
    std::erase_if(counter_totals_, [&](const auto& entry) { return remove(entry.first); });
    std::erase_if(duration_totals_, [&](const auto& entry) { return remove(entry.first); });
    std::erase_if(placements_, [&](const auto& entry) {
        if (!remove(entry.first)) return false;
        if (entry.second == Placement::Admitted) budget_.release(cost(entry.first.metric));
        return true;
    });
}

Collection CountedMetrics::collect() const {
    std::lock_guard lock(mutex_);
    std::vector<TupleCounts> live = tables_.tuples();
    tuples_at_least_ = live.size();
    // A new tuple whose value could replace a gone one waits for the next swap (the upkeep's,
    // within CountUpkeep::kMinSwapInterval), where the replacement happens: its counts are
    // exported once they can be its own. A scrape never waits for the programs.
    std::erase_if(live, [&](const TupleCounts& tuple) {
        const bool waits = wants_replacement(tuple.key);
        replacement_pending_ = replacement_pending_ || waits;
        return waits;
    });
    std::map<SeriesKey, uint64_t> counters = counter_totals_;
    for (const TupleCounts& tuple : live) add_counts(tuple.key, tuple.counts, counters);

    std::map<SeriesKey, Histogram> durations = duration_totals_;
    const std::vector<tcpstates_histogram> unlabelled = tables_.durations(generation_);
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        for (uint8_t from = 0; from < TCPSTATES_STATE_SLOTS; ++from)
            for (uint8_t to = 0; to < TCPSTATES_STATE_SLOTS; ++to) {
                const tcpstates_histogram& h =
                    unlabelled[tcpstates_duration_slot(0, ipv6, from, to)];
                const bool observed = std::any_of(std::begin(h.buckets), std::end(h.buckets),
                                                  [](uint64_t n) { return n != 0; });
                if (observed)
                    durations[{LabelledMetric::StateDurations, ipv6, from, to, LabelValues::kOther,
                               LabelValues::kOther}]
                        .add(h);
            }
    const std::array<tcpstates_histogram, 2> rtts = tables_.handshake_rtts(generation_);
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        if (std::any_of(std::begin(rtts[ipv6].buckets), std::end(rtts[ipv6].buckets),
                        [](uint64_t n) { return n != 0; }))
            durations[{LabelledMetric::HandshakeRtt, ipv6, 0, 0, LabelValues::kOther,
                       LabelValues::kOther}]
                .add(rtts[ipv6]);
    for (const LabelledHistogram& h : tables_.labelled_durations())
        add_labelled_duration(h.key, h.histogram, durations);
    // Read after the classic buckets, so that they hold every observation those hold (the
    // programs count an observation's native bucket first): bpf/counts.bpf.h, observe_both().
    for (const NativeBucket& bucket : tables_.native_buckets())
        add_native_bucket(bucket.key, bucket.count, durations);

    Collection collection;
    std::vector<prometheus::MetricFamily>& out = collection.families;
    render_counters(counters, out);
    std::vector<SeriesKey> duration_keys;
    const size_t durations_at = out.size();
    collection.append(durations_family(durations, duration_keys));
    collection.append(handshake_rtt_family(durations));
    uint64_t available = budget_.available();  // for the gauges' labelled samples
    out.push_back(sockets_family(live, available));
    for (auto& family : oldest_families(available)) out.push_back(std::move(family));
    queue_families(out);
    for (auto& family : self_metrics(live)) out.push_back(std::move(family));
    attach_exemplars(collection, durations_at, duration_keys);
    return collection;
}

prometheus::ClientMetric::Label CountedMetrics::label_of(Label label, uint32_t index) const {
    return {std::string(label_name(label)), std::string(labeler_.name(label, index))};
}

void CountedMetrics::add_series_labels(std::vector<prometheus::ClientMetric::Label>& labels,
                                       const SeriesKey& key) const {
    if (carries(Label::Port, key.metric)) labels.push_back(label_of(Label::Port, key.port));
    if (carries(Label::Cgroup, key.metric)) labels.push_back(label_of(Label::Cgroup, key.cgroup));
}

void CountedMetrics::render_counters(const std::map<SeriesKey, uint64_t>& totals,
                                     std::vector<prometheus::MetricFamily>& out) const {
    struct Family {
        LabelledMetric metric;
        const char* help;
    };
    const Family families[] = {
        {LabelledMetric::Transitions,
         "TCP state transitions, by address family, previous state (from_state) and new state "
         "(to_state)."},
        {LabelledMetric::Closes,
         "Transitions to CLOSE, by the state left (from_state) and why (reason: normal, "
         "refused, timeout, reset, unreachable, canceled, aborted, other)."},
        {LabelledMetric::Resets,
         "TCP resets (RST) sent and received, by the socket's state then (CLOSE: sent for a "
         "segment that found no socket); sent ones by the kernel's reason (Linux >= 6.10, "
         "else not_specified)."},
        {LabelledMetric::Retransmits,
         "TCP retransmissions (each may carry several segments), by the socket's state "
         "(SYN_SENT: the SYN, SYN_RECV: the SYN-ACK)."},
    };
    for (const Family& f : families) {
        prometheus::MetricFamily family =
            metric_family(metric_name(f.metric).data(), f.help, prometheus::MetricType::Counter);
        std::map<SeriesKey, uint64_t> samples;
        const bool labelled = carries(Label::Port, f.metric) || carries(Label::Cgroup, f.metric);
        if (f.metric == LabelledMetric::Transitions && !labelled)
            for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
                for (auto [from, to] : kCommonTransitions)
                    samples[{f.metric, ipv6, uint8_t(from), uint8_t(to), LabelValues::kOther,
                             LabelValues::kOther}] = 0;
        for (auto it = totals.lower_bound({f.metric, 0, 0, 0, 0, 0});
             it != totals.end() && it->first.metric == f.metric; ++it)
            samples[it->first] += it->second;
        for (const auto& [key, value] : samples) {
            std::vector<prometheus::ClientMetric::Label> labels{{"family", family_label(key.ipv6)}};
            switch (f.metric) {
                case LabelledMetric::Transitions:
                    labels.push_back({"from_state", state_label(key.a)});
                    labels.push_back({"to_state", state_label(key.b)});
                    break;
                case LabelledMetric::Closes:
                    labels.push_back({"from_state", state_label(key.a)});
                    labels.push_back(
                        {"reason", std::string(close_reason_name(CloseReason(key.b)))});
                    break;
                case LabelledMetric::Resets:
                    labels.push_back(
                        {"direction", key.a == TCPSTATES_RESET_RECEIVED ? "received" : "sent"});
                    labels.push_back({"state", state_label(key.b)});
                    if (key.a == TCPSTATES_RESET_SENT) {
                        const std::string_view reason =
                            key.reason == kOtherReason ? kOtherResetReason
                                                       : program_.reset_reasons().name(key.reason);
                        labels.push_back({"reason", std::string(reason)});
                    }
                    break;
                default:
                    labels.push_back({"state", state_label(key.b)});
                    break;
            }
            add_series_labels(labels, key);
            add_sample(family, std::move(labels), static_cast<double>(value));
        }
        out.push_back(std::move(family));
    }
}

prometheus::ClientMetric CountedMetrics::histogram_sample(const Histogram& histogram,
                                                          const std::vector<double>& bounds) {
    prometheus::ClientMetric sample;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds.size() && i < TCPSTATES_MAX_BUCKETS; ++i) {
        cumulative += histogram.buckets[i];
        sample.histogram.bucket.push_back({cumulative, bounds[i]});
    }
    uint64_t count = cumulative;
    for (size_t i = bounds.size(); i < histogram.buckets.size(); ++i) count += histogram.buckets[i];
    sample.histogram.bucket.push_back({count, std::numeric_limits<double>::infinity()});
    sample.histogram.sample_count = count;
    sample.histogram.sample_sum = static_cast<double>(histogram.sum_ns) * 1e-9;
    return sample;
}

std::optional<NativeBuckets> CountedMetrics::native_of(const Histogram& histogram) const {
    if (!buckets_.native.enabled || histogram.native_lost) return std::nullopt;
    return native_buckets(buckets_.native.schema, histogram.native_zero, histogram.native,
                          buckets_.native.max_buckets);
}

std::map<CountedMetrics::SeriesKey, CountedMetrics::Histogram> CountedMetrics::histograms_of(
    const std::map<SeriesKey, Histogram>& totals, LabelledMetric metric) {
    std::map<SeriesKey, Histogram> out;
    for (auto it = totals.lower_bound({metric, 0, 0, 0, 0, 0});
         it != totals.end() && it->first.metric == metric; ++it)
        out.insert(*it);
    return out;
}

bool CountedMetrics::labelled(LabelledMetric metric) const {
    return carries(Label::Port, metric) || carries(Label::Cgroup, metric);
}

void CountedMetrics::add_histogram_sample(
    Collection& out, const SeriesKey& key, const Histogram& histogram,
    const std::vector<double>& bounds, std::vector<prometheus::ClientMetric::Label> labels) const {
    prometheus::MetricFamily& family = out.families.front();
    prometheus::ClientMetric sample = histogram_sample(histogram, bounds);
    sample.label = std::move(labels);
    add_series_labels(sample.label, key);
    sort_labels(sample.label);
    if (std::optional<NativeBuckets> native = native_of(histogram))
        out.extras[{0, family.metric.size()}].native = std::move(native);
    family.metric.push_back(std::move(sample));
}

Collection CountedMetrics::durations_family(const std::map<SeriesKey, Histogram>& totals,
                                            std::vector<SeriesKey>& keys) const {
    prometheus::MetricFamily family =
        metric_family(metric_name(LabelledMetric::StateDurations).data(),
                      "Time a TCP socket spent in `state` before it moved to `next_state`.",
                      prometheus::MetricType::Histogram);
    std::map<SeriesKey, Histogram> samples = histograms_of(totals, LabelledMetric::StateDurations);
    if (!labelled(LabelledMetric::StateDurations))
        for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
            for (auto [from, to] : kCommonTransitions)
                if (can_have_duration(from, to))
                    samples[{LabelledMetric::StateDurations, ipv6, uint8_t(from), uint8_t(to),
                             LabelValues::kOther, LabelValues::kOther}];
    Collection out{{std::move(family)}, {}};
    for (const auto& [key, histogram] : samples) {
        add_histogram_sample(out, key, histogram, buckets_.durations,
                             {{"family", family_label(key.ipv6)},
                              {"state", state_label(key.a)},
                              {"next_state", state_label(key.b)}});
        keys.push_back(key);
    }
    return out;
}

Collection CountedMetrics::handshake_rtt_family(
    const std::map<SeriesKey, Histogram>& totals) const {
    prometheus::MetricFamily family = metric_family(
        metric_name(LabelledMetric::HandshakeRtt).data(),
        "Handshake round-trip time of passively opened TCP connections: from the SYN-ACK to the "
        "ACK that completed the handshake, as the kernel measured it (TCP_INFO's tcpi_rtt at "
        "that moment). Handshakes without a measurement: tcpstatesd_handshake_rtt_unmeasured_"
        "total.",
        prometheus::MetricType::Histogram);
    std::map<SeriesKey, Histogram> samples = histograms_of(totals, LabelledMetric::HandshakeRtt);
    // Unlabelled, both families from the start, so that rate() sees the first observation.
    if (!labelled(LabelledMetric::HandshakeRtt))
        for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
            samples[{LabelledMetric::HandshakeRtt, ipv6, 0, 0, LabelValues::kOther,
                     LabelValues::kOther}];
    Collection out{{std::move(family)}, {}};
    for (const auto& [key, histogram] : samples)
        add_histogram_sample(out, key, histogram, buckets_.handshake_rtts,
                             {{"family", family_label(key.ipv6)}});
    return out;
}

const TupleLabeler::Values& CountedMetrics::walked_values(uint16_t port) const {
    auto known = walked_values_.find(port);
    if (known == walked_values_.end())
        known = walked_values_.emplace(port, labeler_.values(port, 0, nullptr)).first;
    return known->second;
}

prometheus::MetricFamily CountedMetrics::sockets_family(const std::vector<TupleCounts>& live,
                                                        uint64_t& available) const {
    const bool by_port = carries(Label::Port, LabelledMetric::Sockets);
    const bool by_cgroup = carries(Label::Cgroup, LabelledMetric::Sockets);
    std::map<SeriesKey, int64_t> counts;
    const auto add = [&](uint8_t ipv6, unsigned state, TupleLabeler::Values values, int64_t n) {
        if (n) counts[series(LabelledMetric::Sockets, ipv6, 0, uint8_t(state), values)] += n;
    };
    std::map<TupleId, Gauge> gauges = gauge_totals_;
    for (const TupleCounts& tuple : live) {
        Gauge& gauge = gauges[tuple_id(tuple.key)];
        for (unsigned state = 0; state < TCPSTATES_STATE_SLOTS; ++state)
            gauge[state] += tuple.counts.sockets[state];
    }
    for (const auto& [id, gauge] : gauges) {
        tcpstates_tuple_key key{};
        std::memcpy(&key, id.data(), sizeof key);
        const TupleLabeler::Values values = values_of(key);
        for (unsigned state = 0; state < TCPSTATES_STATE_SLOTS; ++state)
            add(key.ipv6, state, values, gauge[state]);
    }
    // The walk's sockets have a service port but no owner known. They take a value only where
    // there is room: they have no counts whose series a replaced value would end, and timewait
    // sockets of ports long closed must not push out the values of ports in use.
    // Like a tuple's, a port's values are decided once in an epoch (a refusal counted once).
    for (const SocketWalk::Count& walked : walked_)
        add(walked.key.ipv6, walked.key.state, walked_values(by_port ? walked.key.port : 0),
            int64_t(walked.sockets));
    // Labelled sets beyond what the budget has left fold into their state's "other" one.
    uint64_t folded = 0;
    std::map<SeriesKey, int64_t> placed;
    for (const auto& [key, n] : counts) {
        SeriesKey other = key;
        other.port = other.cgroup = LabelValues::kOther;
        if (key == other || available > 0) {
            if (key != other) --available;
            placed[key] += n;
        } else {
            placed[other] += n;
            ++folded;
        }
    }
    if (folded) budget_.overflowed(LabelledMetric::Sockets, folded);
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        for (unsigned state : kSocketStates)
            placed[{LabelledMetric::Sockets, ipv6, 0, uint8_t(state), LabelValues::kOther,
                    LabelValues::kOther}];
    prometheus::MetricFamily family = metric_family(metric_name(LabelledMetric::Sockets).data(),
                                                    kSocketsHelp, prometheus::MetricType::Gauge);
    for (const auto& [key, n] : placed) {
        if (std::find(std::begin(kSocketStates), std::end(kSocketStates), key.b) ==
            std::end(kSocketStates))
            continue;
        std::vector<prometheus::ClientMetric::Label> labels{{"family", family_label(key.ipv6)},
                                                            {"state", state_label(key.b)}};
        if (by_port) labels.push_back(label_of(Label::Port, key.port));
        if (by_cgroup) labels.push_back(label_of(Label::Cgroup, key.cgroup));
        add_sample(family, std::move(labels), static_cast<double>(n));
    }
    return family;
}

std::vector<prometheus::MetricFamily> CountedMetrics::oldest_families(uint64_t& available) const {
    const bool by_port = carries(Label::Port, LabelledMetric::StateOldest);
    struct Oldest {
        uint64_t since_ns = UINT64_MAX;
        uint32_t start_unknown = 0;
        void add(uint64_t since, uint32_t unknown) {
            since_ns = std::min(since_ns, since);
            start_unknown += unknown;
        }
    };
    // Keys whose port values fold together (refused, "other") take the oldest of them.
    std::map<SeriesKey, Oldest> series_oldest;
    for (const SocketWalk::Oldest& walked : oldest_)
        series_oldest[series(LabelledMetric::StateOldest, walked.key.ipv6, 0, walked.key.state,
                             walked_values(by_port ? walked.key.port : 0))]
            .add(walked.since_ns, walked.start_unknown);
    // A labelled key costs two samples (its age and its mark); beyond the budget it folds into
    // its state's "other" key.
    uint64_t folded = 0;
    std::map<SeriesKey, Oldest> placed;
    for (const auto& [key, oldest] : series_oldest) {
        SeriesKey other = key;
        other.port = other.cgroup = LabelValues::kOther;
        if (key != other && available >= 2) {
            available -= 2;
            placed[key].add(oldest.since_ns, oldest.start_unknown);
        } else {
            if (key != other) ++folded;
            placed[other].add(oldest.since_ns, oldest.start_unknown);
        }
    }
    if (folded) budget_.overflowed(LabelledMetric::StateOldest, folded);

    using prometheus::MetricType;
    prometheus::MetricFamily seconds = metric_family(
        metric_name(LabelledMetric::StateOldest).data(),
        "Age in its state of the oldest TCP socket in each state, per service port, as of now: "
        "since its entry, as the last walk of the sockets found it. A lower bound where "
        "tcpstates_state_oldest_start_known is 0. Full sockets of the daemon's network "
        "namespace, not LISTEN, TIME_WAIT or request sockets.",
        MetricType::Gauge);
    prometheus::MetricFamily known = metric_family(
        "tcpstates_state_oldest_start_known",
        "1 when tcpstates_state_oldest_seconds is exact; 0 when a socket of its series entered "
        "its state unseen (older than the daemon, or a missed transition): the age is then at "
        "least the value shown.",
        MetricType::Gauge);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);  // bpf_ktime_get_ns()'s clock
    const uint64_t now_ns = uint64_t(now.tv_sec) * 1000000000ULL + uint64_t(now.tv_nsec);
    for (const auto& [key, oldest] : placed) {
        std::vector<prometheus::ClientMetric::Label> labels{{"family", family_label(key.ipv6)},
                                                            {"state", state_label(key.b)}};
        if (by_port) labels.push_back(label_of(Label::Port, key.port));
        // Not negative: the entry times were written before the walk that read them ended.
        add_sample(seconds, labels, static_cast<double>(now_ns - oldest.since_ns) * 1e-9);
        add_sample(known, std::move(labels), oldest.start_unknown ? 0.0 : 1.0);
    }
    return {std::move(seconds), std::move(known)};
}

std::vector<prometheus::MetricFamily> CountedMetrics::self_metrics(
    const std::vector<TupleCounts>& live) const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;

    prometheus::MetricFamily unknown = metric_family(
        "tcpstatesd_transitions_unknown_start_total",
        "Transitions whose start was not seen (new socket, child socket, socket older than the "
        "daemon, or one whose record could not be stored): counted, never observed as a "
        "duration.",
        MetricType::Counter);
    const UnknownStarts starts = tables_.unknown_starts();
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        for (unsigned from = 0; from < TCPSTATES_STATE_SLOTS; ++from)
            for (unsigned to = 0; to < TCPSTATES_STATE_SLOTS; ++to)
                if (const uint64_t n = starts[tcpstates_unknown_start_slot(ipv6, from, to)])
                    add_sample(unknown,
                               {{"family", family_label(ipv6)},
                                {"from_state", state_label(from)},
                                {"to_state", state_label(to)}},
                               static_cast<double>(n));
    out.push_back(std::move(unknown));

    prometheus::MetricFamily unmeasured = metric_family(
        "tcpstatesd_handshake_rtt_unmeasured_total",
        "Passively opened connections whose handshake the kernel took no RTT sample of (a "
        "SYN-ACK sent again or a SYN cookie, without TCP timestamps): not observed in "
        "tcpstates_handshake_rtt_seconds.",
        MetricType::Counter);
    const PerFamily without_rtt = tables_.handshake_rtt_unmeasured();
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6)
        add_sample(unmeasured, {{"family", family_label(ipv6)}},
                   static_cast<double>(without_rtt[ipv6]));
    out.push_back(std::move(unmeasured));

    prometheus::MetricFamily values = metric_family(
        "tcpstatesd_label_values", "Values a label has now, besides \"other\" and \"unknown\".",
        MetricType::Gauge);
    prometheus::MetricFamily limits = metric_family(
        "tcpstatesd_label_values_limit",
        "The label's max_values: the cap on tcpstatesd_label_values.", MetricType::Gauge);
    prometheus::MetricFamily refused = metric_family(
        "tcpstatesd_label_value_overflows_total",
        "Label tuples whose value found the label's max_values full: their counts went under "
        "\"other\" (until a value that is gone made room).",
        MetricType::Counter);
    prometheus::MetricFamily replaced = metric_family(
        "tcpstatesd_label_values_replaced_total",
        "Values of cgroups removed or ports no longer listened on that made room for a new value "
        "(their series removed).",
        MetricType::Counter);
    for (Label label : kLabels) {
        const std::vector<prometheus::ClientMetric::Label> which{
            {"label", std::string(label_name(label))}};
        add_sample(values, which, static_cast<double>(labeler_.values_of(label).admitted()));
        add_sample(limits, which,
                   label == Label::Port ? labels_.port.max_values : labels_.cgroup.max_values);
        add_sample(refused, which, static_cast<double>(labeler_.refusals(label)));
        add_sample(replaced, which, static_cast<double>(labeler_.replacements(label)));
    }
    out.push_back(std::move(values));
    out.push_back(std::move(limits));
    out.push_back(std::move(refused));
    out.push_back(std::move(replaced));

    const KernelCounters kernel = program_.read_counters();
    out.push_back(single_sample("tcpstatesd_kernel_tuples",
                                "Label tuples in the programs' table in use.", MetricType::Gauge,
                                static_cast<double>(live.size())));
    out.push_back(single_sample(
        "tcpstatesd_kernel_tuples_limit",
        "The tuple table's capacity (from labels.max_series at start); beyond it counts go to "
        "the overflow tuple, exported as port and cgroup \"other\".",
        MetricType::Gauge, static_cast<double>(tables_.tuple_capacity())));
    prometheus::MetricFamily overflows = metric_family(
        "tcpstatesd_kernel_overflows_total",
        "Counts the programs put under \"other\" because a table had no room (full, or no "
        "memory: tcpstatesd_kernel_allocation_failures_total): table=\"tuples\" "
        "(transitions, closes, resets, retransmissions), \"durations\" (labelled histograms' "
        "observations).",
        MetricType::Counter);
    add_sample(overflows, {{"table", "tuples"}},
               static_cast<double>(kernel[TCPSTATES_COUNTER_TUPLE_OVERFLOW]));
    add_sample(overflows, {{"table", "durations"}},
               static_cast<double>(kernel[TCPSTATES_COUNTER_DURATION_OVERFLOW]));
    out.push_back(std::move(overflows));
    out.push_back(single_sample(
        "tcpstatesd_native_buckets_lost_total",
        "Observations the programs could not put in a native bucket (no room in the native "
        "bucket table, or a duration past 2^25 s): their series is served with classic buckets "
        "only until it starts over.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_NATIVE_LOST])));
    out.push_back(single_sample(
        "tcpstatesd_exemplar_candidates_lost_total",
        "Observations that would have been their series' exemplar on their CPU but found no "
        "room in the programs' exemplar table (docs/metrics.md, \"Exemplars\").",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_EXEMPLAR_TABLE_FULL])));
    out.push_back(single_sample(
        "tcpstatesd_kernel_allocation_failures_total",
        "Entries the programs could not add to a table allocated as used because the kernel "
        "could not allocate them (ENOMEM): the daemon's memory cgroup at its limit, or the host "
        "short of memory. Each costs what a full table would: a socket state failure, an "
        "overflow, a native bucket or exemplar candidate lost, a child without its listener's "
        "owner.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_NO_MEMORY])));
    out.push_back(single_sample(
        "tcpstatesd_socket_count_moves_lost_total",
        "Changes of state a socket's tuple had no room for in the tuple table: "
        "tcpstates_sockets is off by one per change from then on.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_GAUGE_LOST])));
    out.push_back(single_sample("tcpstatesd_count_table_swaps_total",
                                "Swaps of the programs' count tables (their counts folded into "
                                "the daemon's totals).",
                                MetricType::Counter, static_cast<double>(swaps_)));
    out.push_back(single_sample(
        "tcpstatesd_count_table_swap_failures_total",
        "Swaps of the programs' count tables that failed (logged), mostly for want of kernel "
        "memory: the tables in use keep counting, and fill, until a swap works again.",
        MetricType::Counter, static_cast<double>(swap_failures_)));
    out.push_back(single_sample(
        "tcpstatesd_socket_state_failures_total",
        "Sockets whose record could not be stored (no room in the record table: full, "
        "events.socket_table_size, or no memory, tcpstatesd_kernel_allocation_failures_total): "
        "their transitions have an unknown start and no owner, and "
        "tcpstates_sockets counts them from the walks.",
        MetricType::Counter,
        static_cast<double>(kernel[TCPSTATES_COUNTER_STATE_FAILED] +
                            kernel[TCPSTATES_COUNTER_WALK_RECORD_FAILED])));
    out.push_back(single_sample(
        "tcpstatesd_socket_state_mismatches_total",
        "Transitions whose old state was not the socket's recorded state (a transition was "
        "missed); treated as unknown start.",
        MetricType::Counter, static_cast<double>(kernel[TCPSTATES_COUNTER_STATE_MISMATCH])));
    out.push_back(
        single_sample("tcpstatesd_socket_table_capacity",
                      "Sockets the programs' record table holds (events.socket_table_size).",
                      MetricType::Gauge, program_.socket_table_capacity()));
    out.push_back(single_sample(
        "tcpstatesd_socket_table_destroyed_records",
        "Records of destroyed sockets in the record table at its last read (at most every "
        "30 s): kept for the next socket at their address, deleted by the next walks.",
        MetricType::Gauge, static_cast<double>(destroyed_records_)));
    out.push_back(single_sample("tcpstatesd_strange_transitions_total",
                                "Transitions from or to a state a full socket does not take "
                                "(not counted elsewhere).",
                                MetricType::Counter,
                                static_cast<double>(kernel[TCPSTATES_COUNTER_STRANGE_STATE])));
    out.push_back(single_sample("tcpstatesd_socket_walks_total",
                                "Walks of this network namespace's sockets, at start and in "
                                "the background.",
                                MetricType::Counter, static_cast<double>(walks_)));
    out.push_back(single_sample("tcpstatesd_socket_walk_duration_seconds",
                                "How long the last walk of the sockets took.", MetricType::Gauge,
                                walk_seconds_));
    out.push_back(single_sample(
        "tcpstatesd_socket_walk_timestamp_seconds",
        "When the last walk of the sockets ended (Unix seconds): the TIME_WAIT and request "
        "sockets of tcpstates_sockets are as of then.",
        MetricType::Gauge,
        walks_ ? std::chrono::duration<double>(last_walk_.time_since_epoch()).count() : 0));
    out.push_back(single_sample(
        "tcpstatesd_socket_walk_corrections_total",
        "Records a walk found wrong and corrected in tcpstates_sockets: a socket in another "
        "state than recorded, or gone unseen (transitions the programs missed).",
        MetricType::Counter, static_cast<double>(walk_corrections_)));
    out.push_back(single_sample("tcpstatesd_socket_walk_failures_total",
                                "Background walks of the sockets that failed (logged); the "
                                "gauge keeps the last walk's timewait and request sockets.",
                                MetricType::Counter, static_cast<double>(walk_failures_)));
    out.push_back(single_sample("tcpstatesd_startup_snapshot_sockets",
                                "Sockets of the daemon's network namespace found at start.",
                                MetricType::Gauge, static_cast<double>(startup_sockets_)));
    out.push_back(single_sample("tcpstatesd_startup_snapshot_duration_seconds",
                                "How long the start-up walk of the sockets took.",
                                MetricType::Gauge, startup_seconds_));
    out.push_back(single_sample("tcpstatesd_socket_walk_sockets",
                                "Sockets of this network namespace the last walk visited.",
                                MetricType::Gauge, static_cast<double>(walk_totals_.sockets)));
    return out;
}

void CountedMetrics::on_new_tuple(const tcpstates_tuple_key& key) {
    std::lock_guard lock(mutex_);
    ++tuples_at_least_;
    if (key.cgroup_id != 0) labeler_.name_cgroup(key.cgroup_id);
}

void CountedMetrics::walked(const SocketWalk& walk) {
    std::lock_guard lock(mutex_);
    walked_ = walk.walked;
    oldest_ = walk.oldest;
    walk_totals_ = walk.totals;
    walk_seconds_ = walk.seconds;
    if (walk.listing) destroyed_records_ = walk.listing->destroyed_records;
    walk_corrections_ += walk.totals.corrected + walk.totals.swept;
    if (walks_++ == 0) {
        startup_sockets_ = walk.totals.sockets;
        startup_seconds_ = walk.seconds;
    }
    last_walk_ = std::chrono::system_clock::now();
    std::copy(std::begin(walk.totals.listening_ports), std::end(walk.totals.listening_ports),
              listening_now_);
    program_.add_listening_ports(listening_now_);
    labeler_.mark_gone(listening_now_);
    walked_queues(walk);
}

void CountedMetrics::walk_failed() {
    std::lock_guard lock(mutex_);
    ++walk_failures_;
}

void CountedMetrics::swap_failed() {
    std::lock_guard lock(mutex_);
    ++swap_failures_;
}

bool CountedMetrics::swap_wanted() const {
    // Without reading the table (2 KiB a tuple): the tuples counted when it was last read, and
    // those added since that the programs told of; the overflow tuple's use when they could
    // not tell (the perf buffer), a new tuple that found the table full. A scrape reads every
    // tuple of the table (about 5 us each): a swap folds the tuples no socket counts in any more
    // once an eighth of the table has been added since the last.
    const uint64_t full = program_.read_counters()[TCPSTATES_COUNTER_TUPLE_TABLE_FULL];
    std::lock_guard lock(mutex_);
    return replacement_pending_ || labeler_.wants_room() ||
           tuples_at_least_ * 2 > tables_.tuple_capacity() ||
           tuples_at_least_ > tuples_carried_ + tables_.tuple_capacity() / 8 ||
           full != table_full_at_swap_;
}

std::vector<tcpstates_tuple_key> CountedMetrics::counted_tuples(
    const std::vector<TupleCounts>& live) const {
    std::map<TupleId, bool> counted;
    for (const auto& [id, gauge] : gauge_totals_)
        counted[id] = counted[id] ||
                      std::any_of(gauge.begin(), gauge.end(), [](int64_t n) { return n != 0; });
    for (const TupleCounts& tuple : live) {
        const TupleId id = tuple_id(tuple.key);
        const bool any =
            std::any_of(std::begin(tuple.counts.sockets), std::end(tuple.counts.sockets),
                        [](int64_t n) { return n != 0; });
        counted[id] = counted[id] || any;
    }
    std::vector<tcpstates_tuple_key> keys;
    for (const auto& [id, any] : counted)
        if (any) {
            tcpstates_tuple_key key{};
            std::memcpy(&key, id.data(), sizeof key);
            keys.push_back(key);
        }
    return keys;
}

void CountedMetrics::swap() {
    std::vector<tcpstates_tuple_key> carried;
    {
        std::lock_guard lock(mutex_);
        carried = counted_tuples(tables_.tuples());
    }
    // The wait for the programs to leave the old tables (milliseconds), without the lock:
    // scrapes meanwhile read the old tables (the counts already in the new ones show at the
    // next scrape). Only the reactor thread swaps.
    tables_.prepare(carried);
    {
        std::lock_guard lock(mutex_);
        fold_retired();
    }
    tables_.clear_retired();  // no scrape reads the old tables any more
}

void CountedMetrics::swap_locked() const {
    tables_.prepare(counted_tuples(tables_.tuples()));
    fold_retired();
    tables_.clear_retired();
}

void CountedMetrics::fold_retired() const {
    const CountTables::Retired retired = tables_.retire();
    // The tuples whose counts were exported keep their values; the others get theirs now,
    // where a gone value may give its place, once the former are folded.
    std::vector<const TupleCounts*> unassigned;
    for (const TupleCounts& tuple : retired.tuples) {
        Gauge& gauge = gauge_totals_[tuple_id(tuple.key)];
        for (unsigned state = 0; state < TCPSTATES_STATE_SLOTS; ++state)
            gauge[state] += tuple.counts.sockets[state];
        if (assigned_.contains(tuple_id(tuple.key)))
            add_counts(tuple.key, tuple.counts, counter_totals_);
        else
            unassigned.push_back(&tuple);
    }
    const auto tuple_of = [](const tcpstates_duration_key& key) {
        tcpstates_tuple_key tuple{};
        tuple.cgroup_id = key.cgroup_id;
        tuple.port = key.port;
        tuple.ipv6 = key.ipv6;
        return tuple;
    };
    std::vector<const LabelledHistogram*> unassigned_durations;
    for (const LabelledHistogram& h : retired.durations)
        if (assigned_.contains(tuple_id(tuple_of(h.key))))
            add_labelled_duration(h.key, h.histogram, duration_totals_);
        else
            unassigned_durations.push_back(&h);
    assigned_.clear();
    walked_values_.clear();
    queue_port_values_.clear();
    std::erase_if(placements_, [](const auto& entry) { return entry.second == Placement::Folded; });
    labeler_.forget_refused();
    for (const TupleCounts* tuple : unassigned) {
        values_of(tuple->key, true);
        add_counts(tuple->key, tuple->counts, counter_totals_);
    }
    for (const LabelledHistogram* h : unassigned_durations) {
        values_of(tuple_of(h->key), true);
        add_labelled_duration(h->key, h->histogram, duration_totals_);
    }
    // After the classic histograms, whose tuples took their values first.
    for (const NativeBucket& bucket : retired.native)
        add_native_bucket(bucket.key, bucket.count, duration_totals_);
    std::erase_if(gauge_totals_, [](const auto& entry) {
        return std::all_of(entry.second.begin(), entry.second.end(),
                           [](int64_t n) { return n == 0; });
    });
    // Tuples that got counted sockets after the carried ones were read: their counts move in
    // the new table now.
    std::vector<tcpstates_tuple_key> counted;
    for (const auto& [id, gauge] : gauge_totals_) {
        tcpstates_tuple_key key{};
        std::memcpy(&key, id.data(), sizeof key);
        counted.push_back(key);
    }
    tuples_at_least_ = tuples_carried_ = counted.size();
    table_full_at_swap_ = program_.read_counters()[TCPSTATES_COUNTER_TUPLE_TABLE_FULL];
    replacement_pending_ = false;
    ++swaps_;
    tables_.carry(counted);
}

void CountedMetrics::prepare_buckets(const HistogramBuckets& buckets) {
    std::lock_guard lock(mutex_);
    if (buckets == buckets_ || buckets == prepared_buckets_) return;
    // The unused generation must be zero and no program may still write it, which a swap makes
    // sure of (it waits for the programs). Neither changes what the metrics show: the swap
    // keeps every count, and the programs write only the generation in use.
    swap_locked();
    tables_.clear_durations(1 - generation_);
    prepared_buckets_ = buckets;
}

void CountedMetrics::configure(const LabelsConfig& labels, HistogramBuckets buckets) {
    std::lock_guard lock(mutex_);
    const bool new_buckets = buckets != buckets_;
    if (new_buckets && buckets != prepared_buckets_)
        throw std::logic_error("CountedMetrics::configure: new buckets not prepared");
    const LabelsConfig old = labels_;
    labels_ = labels;
    for (LabelledMetric metric : kLabelledMetrics)
        if (carried(old, Label::Port, metric) != carried(labels, Label::Port, metric) ||
            carried(old, Label::Cgroup, metric) != carried(labels, Label::Cgroup, metric))
            remove_series([metric](const SeriesKey& key) { return key.metric == metric; });
    labeler_.configure(labels);
    walked_values_.clear();
    queue_port_values_.clear();
    budget_.set_limit(labels.max_series);
    program_.apply_labels(tuple_label_settings(labels));
    if (new_buckets) {
        // Every histogram moves to the new generation: both start over.
        remove_series([](const SeriesKey& key) {
            return key.metric == LabelledMetric::StateDurations ||
                   key.metric == LabelledMetric::HandshakeRtt;
        });
        buckets_ = std::move(buckets);
        prepared_buckets_.reset();
        generation_ = program_.switch_bucket_bounds(bounds_ns(buckets_.durations),
                                                    bounds_ns(buckets_.handshake_rtts),
                                                    native_schema(buckets_.native));
        assigned_.clear();
    }
}

uint64_t CountedMetrics::transitions_total() const {
    std::lock_guard lock(mutex_);
    uint64_t total = 0;
    for (auto it = counter_totals_.lower_bound({LabelledMetric::Transitions, 0, 0, 0, 0, 0});
         it != counter_totals_.end() && it->first.metric == LabelledMetric::Transitions; ++it)
        total += it->second;
    for (const TupleCounts& tuple : tables_.tuples())
        for (const auto& row : tuple.counts.transitions)
            for (uint64_t n : row) total += n;
    return total;
}

}  // namespace tcpstatesd

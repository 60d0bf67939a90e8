// CountedMetrics' exemplars (docs/metrics.md, "Exemplars"): the programs' candidates, merged
// between scrapes and attached to the duration samples of their series at each scrape.
#include <time.h>

#include <cstring>

#include "kernel/bpf_program.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/exemplar_labels.hpp"

namespace tcpstatesd {

namespace {

int64_t clock_ns(clockid_t clock) {
    timespec now{};
    clock_gettime(clock, &now);
    return int64_t(now.tv_sec) * 1000000000 + now.tv_nsec;
}

}  // namespace

void CountedMetrics::set_exemplars(bool on) {
    std::lock_guard lock(mutex_);
    exemplars_ = on;
    program_.set_exemplars(on);
    if (!on) {
        pending_exemplars_.clear();
        shown_exemplars_.clear();
    }
}

void CountedMetrics::add_exemplars(const std::vector<ExemplarCandidate>& candidates) {
    if (candidates.empty()) return;
    // The programs' clock (bpf_ktime_get_ns()) is CLOCK_MONOTONIC: a candidate's wall-clock
    // time is now less its age.
    const int64_t monotonic_ns = clock_ns(CLOCK_MONOTONIC);
    const int64_t realtime_ns = clock_ns(CLOCK_REALTIME);
    std::lock_guard lock(mutex_);
    if (!exemplars_) return;  // taken just before the switch went off
    for (const ExemplarCandidate& candidate : candidates) {
        tcpstates_exemplar_key series = candidate.key;
        series.cpu = 0;  // the slowest over CPUs
        std::array<uint64_t, 2> id{};
        std::memcpy(id.data(), &series, sizeof series);
        const auto at_ns = static_cast<int64_t>(candidate.exemplar.at_ns);
        const TimedExemplar timed{candidate.exemplar,
                                  (realtime_ns - (monotonic_ns - at_ns)) / 1000000};
        auto [kept, added] = pending_exemplars_.try_emplace(id, timed);
        if (!added && kept->second.exemplar.duration_ns < timed.exemplar.duration_ns)
            kept->second = timed;
    }
}

void CountedMetrics::attach_exemplars(Collection& collection, size_t family,
                                      const std::vector<SeriesKey>& keys) const {
    // The series a candidate's observation went to, as the histograms' (collect()); the
    // slowest of those of series folded together ("other").
    std::map<SeriesKey, TimedExemplar> fresh;
    for (const auto& [id, timed] : pending_exemplars_) {
        tcpstates_exemplar_key key{};
        std::memcpy(&key, id.data(), sizeof key);
        if (key.from >= TCPSTATES_STATE_SLOTS || key.to >= TCPSTATES_STATE_SLOTS) continue;
        SeriesKey series_key{LabelledMetric::StateDurations,
                             key.ipv6,
                             key.from,
                             key.to,
                             LabelValues::kOther,
                             LabelValues::kOther};
        if (key.labelled) {
            tcpstates_tuple_key tuple{};
            tuple.cgroup_id = key.cgroup_id;
            tuple.port = key.port;
            tuple.ipv6 = key.ipv6;
            series_key = place(series(LabelledMetric::StateDurations, key.ipv6, key.from, key.to,
                                      values_of(tuple)));
        }
        auto [slowest, added] = fresh.try_emplace(series_key, timed);
        if (!added && slowest->second.exemplar.duration_ns < timed.exemplar.duration_ns)
            slowest->second = timed;
    }
    pending_exemplars_.clear();
    // A series observed since the last scrape shows its slowest observation of that time,
    // even if faster than the one shown before; the others keep theirs.
    for (const auto& [key, timed] : fresh) shown_exemplars_.insert_or_assign(key, timed);
    std::map<SeriesKey, TimedExemplar> exported;
    for (size_t metric = 0; metric < keys.size(); ++metric) {
        const auto shown = shown_exemplars_.find(keys[metric]);
        if (shown == shown_exemplars_.end()) continue;
        const tcpstates_exemplar& e = shown->second.exemplar;
        const std::string cgroup = e.cgroup_id ? labeler_.cgroup_name(e.cgroup_id) : "";
        collection.extras[{family, metric}].exemplar =
            Exemplar{exemplar_labels(e, cgroup), static_cast<double>(e.duration_ns) * 1e-9,
                     shown->second.timestamp_ms};
        exported.insert(*shown);
    }
    // Series gone (removed, or no longer exported) keep no exemplar.
    shown_exemplars_ = std::move(exported);
}

}  // namespace tcpstatesd

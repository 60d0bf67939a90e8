#include "metrics/series_budget.hpp"

#include <string>

namespace tcpstatesd {

SeriesBudget::SeriesBudget(prometheus::Registry& registry, uint32_t max_series)
    : limit_(max_series),
      overflows_(prometheus::BuildCounter()
                     .Name("tcpstatesd_series_overflows_total")
                     .Help("Series that would have passed labels.max_series, folded into "
                           "port=\"other\", cgroup=\"other\": events for the counters and "
                           "histograms, label sets at each scrape for the gauge.")
                     .Register(registry)),
      used_gauge_(prometheus::BuildGauge()
                      .Name("tcpstatesd_labelled_series")
                      .Help("Samples of the counters and histograms that carry a port or cgroup "
                            "value other than \"other\" (a histogram's buckets, sum and count "
                            "each count).")
                      .Register(registry)
                      .Add({})),
      limit_gauge_(prometheus::BuildGauge()
                       .Name("tcpstatesd_labelled_series_limit")
                       .Help("labels.max_series: the cap on the labelled samples of every "
                             "family together, the gauge's included.")
                       .Register(registry)
                       .Add({})) {
    for (LabelledMetric metric : kLabelledMetrics)
        overflow_counters_[static_cast<size_t>(metric)] =
            &overflows_.Add({{"metric", std::string(metric_name(metric))}});
    limit_gauge_.Set(max_series);
}

void SeriesBudget::set_limit(uint32_t max_series) {
    limit_ = max_series;
    limit_gauge_.Set(max_series);
}

bool SeriesBudget::reserve(uint64_t cost, LabelledMetric metric) {
    if (used_ + cost > limit_) {
        overflowed(metric);
        return false;
    }
    used_ += cost;
    used_gauge_.Set(static_cast<double>(used_));
    return true;
}

void SeriesBudget::release(uint64_t cost) {
    used_ -= cost;
    used_gauge_.Set(static_cast<double>(used_));
}

uint64_t SeriesBudget::available() const {
    const uint64_t used = used_, limit = limit_;
    return used < limit ? limit - used : 0;
}

void SeriesBudget::overflowed(LabelledMetric metric, uint64_t count) {
    overflow_counters_[static_cast<size_t>(metric)]->Increment(static_cast<double>(count));
}

}  // namespace tcpstatesd

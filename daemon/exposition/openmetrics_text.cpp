#include "exposition/openmetrics_text.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <array>
#include <cmath>
#include <string_view>
#include <vector>

#include "exposition/text_syntax.hpp"

namespace tcpstatesd {

namespace {

constexpr std::string_view kTotal = "_total";

bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// The base units of Prometheus' naming conventions: a family named "..._<unit>" has that unit.
std::string_view unit_of(std::string_view family) {
    static constexpr std::array<std::string_view, 9> kBaseUnits = {
        "seconds", "bytes", "ratio", "meters", "grams", "joules", "volts", "amperes", "celsius"};
    const auto underscore = family.rfind('_');
    if (underscore == std::string_view::npos) return {};
    const std::string_view last = family.substr(underscore + 1);
    for (const std::string_view unit : kBaseUnits) {
        if (last == unit) return unit;
    }
    return {};
}

// One sample line: name, the metric's labels and an optional extra one (le, quantile), value
// and the metric's timestamp (OpenMetrics counts seconds, prometheus-cpp milliseconds).
class SampleWriter {
public:
    SampleWriter(std::string& out, const prometheus::ClientMetric& metric)
        : out_(out), metric_(metric) {}

    void write(std::string_view name, std::string_view suffix, double value,
               const char* extra_label = nullptr, double extra_value = 0,
               const Exemplar* exemplar = nullptr) {
        append_series(out_, name, suffix, metric_.label, extra_label, extra_value);
        append_number(out_, value);
        if (metric_.timestamp_ms != 0) {
            // Milliseconds since the epoch take 13 digits as seconds: exact in 16.
            out_ += ' ';
            append_number(out_, static_cast<double>(metric_.timestamp_ms) / 1000.0);
        }
        if (exemplar != nullptr) write_exemplar(*exemplar);
        out_ += '\n';
    }

private:
    // " # {local=\"...\"} 0.25 1733472000.123": labels, value, timestamp in seconds.
    void write_exemplar(const Exemplar& exemplar) {
        out_ += " # {";
        append_labels(out_, exemplar.labels);
        out_ += "} ";
        append_number(out_, exemplar.value);
        out_ += ' ';
        append_number(out_, static_cast<double>(exemplar.timestamp_ms) / 1000.0);
    }

    std::string& out_;
    const prometheus::ClientMetric& metric_;
};

// The exemplar goes on the line of the bucket its value falls in.
void write_histogram(SampleWriter& samples, std::string_view name,
                     const prometheus::ClientMetric::Histogram& histogram,
                     const Exemplar* exemplar) {
    bool infinite_bucket = false;
    for (const auto& bucket : histogram.bucket) {
        const bool holds = exemplar != nullptr && exemplar->value <= bucket.upper_bound;
        samples.write(name, "_bucket", static_cast<double>(bucket.cumulative_count), "le",
                      bucket.upper_bound, holds ? exemplar : nullptr);
        if (holds) exemplar = nullptr;
        infinite_bucket = std::isinf(bucket.upper_bound) && bucket.upper_bound > 0;
    }
    // OpenMetrics requires the +Inf bucket; the text format does not.
    const auto count = static_cast<double>(histogram.sample_count);
    if (!infinite_bucket) samples.write(name, "_bucket", count, "le", INFINITY, exemplar);
    samples.write(name, "_count", count);
    samples.write(name, "_sum", histogram.sample_sum);
}

}  // namespace

std::string openmetrics_text(const Collection& collection) {
    std::string out;
    for (size_t family_index = 0; family_index < collection.families.size(); ++family_index) {
        const auto& family = collection.families[family_index];
        std::string_view name = family.name;
        auto type = family.type;
        if (type == prometheus::MetricType::Counter) {
            // The sample keeps the text format's name: the counter's family drops "_total".
            // A counter named without it could only keep its series as "unknown".
            if (ends_with(name, kTotal) && name.size() > kTotal.size())
                name.remove_suffix(kTotal.size());
            else
                type = prometheus::MetricType::Untyped;
        }
        if (!family.help.empty()) {
            out.append("# HELP ").append(name).append(" ");
            append_escaped(out, family.help);
            out += '\n';
        }
        const char* type_text =
            type == prometheus::MetricType::Untyped ? "unknown" : type_name(type);
        out.append("# TYPE ").append(name).append(" ").append(type_text).append("\n");
        if (const auto unit = unit_of(name); !unit.empty())
            out.append("# UNIT ").append(name).append(" ").append(unit).append("\n");
        for (size_t metric_index = 0; metric_index < family.metric.size(); ++metric_index) {
            const auto& metric = family.metric[metric_index];
            SampleWriter samples(out, metric);
            switch (type) {
                case prometheus::MetricType::Counter:
                    samples.write(name, kTotal, metric.counter.value);
                    break;
                case prometheus::MetricType::Gauge:
                    samples.write(name, "", metric.gauge.value);
                    break;
                case prometheus::MetricType::Untyped:
                    // A counter without "_total" keeps its value under its own name.
                    samples.write(name, "",
                                  family.type == prometheus::MetricType::Counter
                                      ? metric.counter.value
                                      : metric.untyped.value);
                    break;
                case prometheus::MetricType::Histogram:
                    write_histogram(samples, name, metric.histogram,
                                    collection.exemplar({family_index, metric_index}));
                    break;
                case prometheus::MetricType::Summary:
                    for (const auto& quantile : metric.summary.quantile)
                        samples.write(name, "", quantile.value, "quantile", quantile.quantile);
                    samples.write(name, "_count", static_cast<double>(metric.summary.sample_count));
                    samples.write(name, "_sum", metric.summary.sample_sum);
                    break;
            }
        }
    }
    out += "# EOF\n";
    return out;
}

}  // namespace tcpstatesd

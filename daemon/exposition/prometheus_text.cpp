#include "exposition/prometheus_text.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "exposition/text_syntax.hpp"

namespace tcpstatesd {

namespace {

// The text format escapes a HELP text's backslashes and newlines, and nothing else.
void append_help(std::string& out, std::string_view text) {
    for (const char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

template <typename Integer>
void append_integer(std::string& out, Integer value) {
    std::array<char, 24> digits{};
    const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
    out.append(digits.data(), result.ptr);
}

// The sample lines of one series; each ends with the metric's timestamp in milliseconds, if
// it has one.
class SampleWriter {
public:
    SampleWriter(std::string& out, std::string_view name, const prometheus::ClientMetric& metric)
        : out_(out), name_(name), metric_(metric) {}

    void value(std::string_view suffix, double value, const char* extra_label = nullptr,
               double extra_value = 0) {
        append_series(out_, name_, suffix, metric_.label, extra_label, extra_value);
        append_number(out_, value);
        end_line();
    }

    void count(std::string_view suffix, uint64_t count, const char* extra_label = nullptr,
               double extra_value = 0) {
        append_series(out_, name_, suffix, metric_.label, extra_label, extra_value);
        append_integer(out_, count);
        end_line();
    }

private:
    void end_line() {
        if (metric_.timestamp_ms != 0) {
            out_ += ' ';
            append_integer(out_, metric_.timestamp_ms);
        }
        out_ += '\n';
    }

    std::string& out_;
    std::string_view name_;
    const prometheus::ClientMetric& metric_;
};

void write_histogram(SampleWriter& samples, const prometheus::ClientMetric::Histogram& histogram) {
    samples.count("_count", histogram.sample_count);
    samples.value("_sum", histogram.sample_sum);
    bool infinite_bucket = false;
    for (const auto& bucket : histogram.bucket) {
        samples.count("_bucket", bucket.cumulative_count, "le", bucket.upper_bound);
        infinite_bucket = std::isinf(bucket.upper_bound) && bucket.upper_bound > 0;
    }
    if (!infinite_bucket) samples.count("_bucket", histogram.sample_count, "le", INFINITY);
}

void write_summary(SampleWriter& samples, const prometheus::ClientMetric::Summary& summary) {
    samples.count("_count", summary.sample_count);
    samples.value("_sum", summary.sample_sum);
    for (const auto& quantile : summary.quantile)
        samples.value("", quantile.value, "quantile", quantile.quantile);
}

}  // namespace

std::string prometheus_text(const std::vector<prometheus::MetricFamily>& families) {
    std::string out;
    for (const auto& family : families) {
        if (!family.help.empty()) {
            out.append("# HELP ").append(family.name).append(" ");
            append_help(out, family.help);
            out += '\n';
        }
        out.append("# TYPE ").append(family.name).append(" ").append(type_name(family.type));
        out += '\n';
        for (const auto& metric : family.metric) {
            SampleWriter samples(out, family.name, metric);
            switch (family.type) {
                case prometheus::MetricType::Counter:
                    samples.value("", metric.counter.value);
                    break;
                case prometheus::MetricType::Gauge:
                    samples.value("", metric.gauge.value);
                    break;
                case prometheus::MetricType::Untyped:
                    samples.value("", metric.untyped.value);
                    break;
                case prometheus::MetricType::Histogram:
                    write_histogram(samples, metric.histogram);
                    break;
                case prometheus::MetricType::Summary:
                    write_summary(samples, metric.summary);
                    break;
            }
        }
    }
    return out;
}

}  // namespace tcpstatesd

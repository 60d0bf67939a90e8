#include "exposition/exposition_format.hpp"

#include <charconv>
#include <optional>
#include <string_view>

#include "exposition/openmetrics_text.hpp"
#include "exposition/prometheus_text.hpp"
#include "exposition/protobuf_delimited.hpp"

namespace tcpstatesd {

namespace {

std::string_view trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// One media range of an Accept header ("type/subtype; name=value; q=0.5"), its parameters
// looked up by name. Parameter values may be quoted (RFC 9110, 5.6.6).
class MediaRange {
public:
    explicit MediaRange(std::string_view text) {
        const auto semicolon = text.find(';');
        type_ = trim(text.substr(0, semicolon));
        if (semicolon != std::string_view::npos) parameters_ = text.substr(semicolon + 1);
    }

    bool is(std::string_view type) const { return equals_ignoring_case(type_, type); }

    // The parameter's value, or nullopt when absent.
    std::optional<std::string_view> parameter(std::string_view name) const {
        std::string_view rest = parameters_;
        while (!rest.empty()) {
            const auto semicolon = rest.find(';');
            const std::string_view item = rest.substr(0, semicolon);
            rest = semicolon == std::string_view::npos ? "" : rest.substr(semicolon + 1);
            const auto equals = item.find('=');
            if (equals == std::string_view::npos) continue;
            if (!equals_ignoring_case(trim(item.substr(0, equals)), name)) continue;
            std::string_view value = trim(item.substr(equals + 1));
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
                value = value.substr(1, value.size() - 2);
            return value;
        }
        return std::nullopt;
    }

    // The q value, 1 when absent; 0 (not acceptable) when it is not a number in 0..1.
    double quality() const {
        const auto q = parameter("q");
        if (!q) return 1;
        double value = 0;
        const auto [end, error] = std::from_chars(q->data(), q->data() + q->size(), value);
        if (error != std::errc() || end != q->data() + q->size() || !(value >= 0 && value <= 1))
            return 0;
        return value;
    }

    // The served format this range asks for, if any.
    std::optional<ExpositionFormat> format() const {
        const auto version = parameter("version");
        if (is("application/vnd.google.protobuf")) {
            // The delimited encoding of MetricFamily is the only protobuf form served.
            if (parameter("proto") == "io.prometheus.client.MetricFamily" &&
                parameter("encoding") == "delimited")
                return ExpositionFormat::Protobuf;
            return std::nullopt;
        }
        if (is("application/openmetrics-text")) {
            if (!version || *version == "1.0.0") return ExpositionFormat::OpenMetrics;
            return std::nullopt;
        }
        if (is("text/plain")) {
            if (!version || *version == "0.0.4") return ExpositionFormat::Text;
            return std::nullopt;
        }
        if (is("*/*") || is("text/*")) return ExpositionFormat::Text;
        return std::nullopt;
    }

private:
    std::string_view type_;
    std::string_view parameters_;
};

}  // namespace

ExpositionFormat negotiate_format(const char* accept) {
    if (accept == nullptr) return ExpositionFormat::Text;
    ExpositionFormat best = ExpositionFormat::Text;
    double best_quality = 0;
    std::string_view rest(accept);
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        const MediaRange range(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
        const auto format = range.format();
        const double quality = range.quality();
        if (format && quality > best_quality) {
            best = *format;
            best_quality = quality;
        }
    }
    return best;
}

const char* content_type(ExpositionFormat format) {
    switch (format) {
        case ExpositionFormat::OpenMetrics:
            return "application/openmetrics-text; version=1.0.0; charset=utf-8";
        case ExpositionFormat::Protobuf:
            return "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
                   "encoding=delimited";
        case ExpositionFormat::Text:
            break;
    }
    return "text/plain; version=0.0.4; charset=utf-8";
}

std::string serialize(ExpositionFormat format, const Collection& collection) {
    switch (format) {
        case ExpositionFormat::OpenMetrics:
            return openmetrics_text(collection);
        case ExpositionFormat::Protobuf:
            return protobuf_delimited(collection);
        case ExpositionFormat::Text:
            break;
    }
    return prometheus_text(collection.families);
}

}  // namespace tcpstatesd

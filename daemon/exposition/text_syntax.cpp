#include "exposition/text_syntax.hpp"

#include <array>
#include <charconv>
#include <cmath>

namespace tcpstatesd {

const char* type_name(prometheus::MetricType type) {
    switch (type) {
        case prometheus::MetricType::Counter:
            return "counter";
        case prometheus::MetricType::Gauge:
            return "gauge";
        case prometheus::MetricType::Summary:
            return "summary";
        case prometheus::MetricType::Histogram:
            return "histogram";
        case prometheus::MetricType::Untyped:
            break;
    }
    return "untyped";
}

void append_number(std::string& out, double value) {
    if (std::isnan(value)) {
        out += "NaN";
    } else if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
    } else {
        std::array<char, 32> digits{};
        const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value,
                                          std::chars_format::general, 16);
        out.append(digits.data(), result.ptr);
    }
}

std::string exposition_number(double value) {
    std::string text;
    append_number(text, value);
    return text;
}

void append_escaped(std::string& out, std::string_view text) {
    for (const char c : text) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '"':
                out += "\\\"";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
}

void append_labels(std::string& out, const std::vector<prometheus::ClientMetric::Label>& labels) {
    const char* separator = "";
    for (const auto& label : labels) {
        out.append(separator).append(label.name).append("=\"");
        append_escaped(out, label.value);
        out += '"';
        separator = ",";
    }
}

void append_series(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<prometheus::ClientMetric::Label>& labels,
                   const char* extra_label, double extra_value) {
    out.append(name).append(suffix);
    if (!labels.empty() || extra_label != nullptr) {
        out += '{';
        append_labels(out, labels);
        if (extra_label != nullptr) {
            out.append(labels.empty() ? "" : ",").append(extra_label).append("=\"");
            append_number(out, extra_value);
            out += '"';
        }
        out += '}';
    }
    out += ' ';
}

}  // namespace tcpstatesd

// The strict YAML reading shared by the configuration files (config.cpp, web_config.cpp):
// every error names the file, the 1-based line and column, the dotted key path, what was
// expected and what was found; unknown and duplicate keys are errors.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace tcpstatesd::yaml_reader {

// A string as it appears in a message: quoted, control characters escaped, so a message
// stays one line whatever the file holds.
inline std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
            out += hex;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

inline std::string join(const std::vector<std::string_view>& names) {
    std::string out;
    for (auto name : names) {
        if (!out.empty()) out += ", ";
        out += name;
    }
    return out;
}

inline std::string position(const YAML::Mark& mark) {
    return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

// Whole decimal numbers only: YAML's other integer spellings (0x.., 0o.., 1_000) are not
// worth the ambiguity in a configuration file.
inline std::optional<uint64_t> parse_whole(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

inline std::optional<int64_t> parse_integer(std::string_view text) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

inline std::optional<double> parse_real(std::string_view text) {
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// One value in the document: its dotted key path and where to point when it is wrong.
struct Field {
    std::string path;
    YAML::Node node;
    // An empty value ("key:" with nothing after it) carries the mark of whatever follows
    // it, so errors about it point at its key instead.
    YAML::Mark fallback;

    YAML::Mark mark() const { return node.IsNull() ? fallback : node.Mark(); }
};

class Reader {
public:
    explicit Reader(const std::string& source) : source_(source) {}

    [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) const {
        if (mark.is_null()) throw ConfigError(source_ + ": " + what);
        throw ConfigError(source_ + ":" + std::to_string(mark.line + 1) + ":" +
                          std::to_string(mark.column + 1) + ": " + what);
    }

    [[noreturn]] void fail(const Field& field, const std::string& what) const {
        fail(field.mark(), field.path.empty() ? what : field.path + ": " + what);
    }

    static std::string describe(const YAML::Node& node) {
        switch (node.Type()) {
            case YAML::NodeType::Null:
                return "nothing";
            case YAML::NodeType::Sequence:
                return "a list";
            case YAML::NodeType::Map:
                return "a mapping";
            default:
                return quoted(node.Scalar());
        }
    }

    [[noreturn]] void expected(const Field& field, const std::string& what) const {
        fail(field, "expected " + what + ", got " + describe(field.node));
    }

    struct Key {
        std::string_view name;
        std::function<void(const Field&)> parse;
    };

    // Visits every entry of a mapping with the parser of its key. Unknown keys, duplicate
    // keys (which yaml-cpp keeps silently) and keys that are not names are errors. An empty
    // section ("web:" with every key commented out) is an empty mapping.
    void mapping(const Field& field, const std::vector<Key>& keys) const {
        std::vector<std::string_view> names;
        names.reserve(keys.size());
        for (const auto& key : keys) names.push_back(key.name);
        if (field.node.IsNull()) return;
        if (!field.node.IsMap()) expected(field, "a mapping with the keys " + join(names));

        const std::string prefix = field.path.empty() ? "" : field.path + ".";
        std::map<std::string, YAML::Mark> seen;
        for (const auto& entry : field.node) {
            const YAML::Node key = entry.first;
            Field key_field{field.path, key, key.Mark()};
            if (!key.IsScalar()) fail(key_field, "expected a key name, got " + describe(key));
            const std::string& name = key.Scalar();
            auto [first, inserted] = seen.emplace(name, key.Mark());
            if (!inserted)
                fail(key_field, "duplicate key " + quoted(name) + " (first at " +
                                    position(first->second) + ")");
            auto known = std::find_if(keys.begin(), keys.end(),
                                      [&](const Key& k) { return k.name == name; });
            if (known == keys.end())
                fail(key_field, "unknown key " + quoted(name) + ", expected one of " + join(names));
            known->parse(Field{prefix + name, entry.second, key.Mark()});
        }
    }

    std::vector<Field> sequence(const Field& field, const std::string& what) const {
        if (!field.node.IsSequence()) expected(field, what);
        std::vector<Field> items;
        for (const auto& item : field.node) items.push_back(Field{field.path, item, field.mark()});
        return items;
    }

    std::vector<Field> nonempty_sequence(const Field& field, const std::string& what) const {
        auto items = sequence(field, what);
        if (items.empty()) fail(field, "expected " + what + ", got an empty list");
        return items;
    }

    const std::string& scalar(const Field& field, const std::string& what) const {
        if (!field.node.IsScalar()) expected(field, what);
        return field.node.Scalar();
    }

    // A plain (unquoted) scalar: "4" in quotes is a string, not a number.
    const std::string& number_text(const Field& field, const std::string& what) const {
        const std::string& text = scalar(field, what);
        if (field.node.Tag() != "?")
            fail(field, "expected " + what + ", got the quoted string " + quoted(text) +
                            " (write numbers without quotes)");
        return text;
    }

    uint64_t whole(const Field& field, uint64_t min, uint64_t max) const {
        const std::string what =
            "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
        auto value = parse_whole(number_text(field, what));
        if (!value || *value < min || *value > max) expected(field, what);
        return *value;
    }

    // A whole number that may be negative.
    int64_t integer(const Field& field, int64_t min, int64_t max) const {
        const std::string what =
            "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
        auto value = parse_integer(number_text(field, what));
        if (!value || *value < min || *value > max) expected(field, what);
        return *value;
    }

    uint64_t power_of_two(const Field& field, uint64_t min, uint64_t max) const {
        const std::string what =
            "a power of two from " + std::to_string(min) + " to " + std::to_string(max);
        auto value = parse_whole(number_text(field, what));
        if (!value || *value < min || *value > max || !std::has_single_bit(*value))
            expected(field, what);
        return *value;
    }

    // A plain true or false: "true" in quotes is a string, as with numbers.
    bool boolean(const Field& field) const {
        const std::string what = "one of false, true";
        if (field.node.IsScalar() && field.node.Tag() != "?")
            fail(field, "expected " + what + ", got the quoted string " +
                            quoted(field.node.Scalar()) + " (write true and false without quotes)");
        return choice(field, {"false", "true"}) == 1;
    }

    // The index of the value in choices.
    size_t choice(const Field& field, const std::vector<std::string_view>& choices) const {
        const std::string what = "one of " + join(choices);
        const std::string& text = scalar(field, what);
        auto found = std::find(choices.begin(), choices.end(), text);
        if (found == choices.end()) expected(field, what);
        return static_cast<size_t>(found - choices.begin());
    }

    // Runs a shared validation rule (which throws std::invalid_argument) on a string value.
    template <typename Rule>
    auto checked(const Field& field, const std::string& what, Rule rule) const {
        const std::string& text = scalar(field, what);
        try {
            return rule(text);
        } catch (const std::invalid_argument& e) {
            fail(field, e.what());
        }
    }

private:
    const std::string& source_;
};

}  // namespace tcpstatesd::yaml_reader

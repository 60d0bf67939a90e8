#include "kernel/reset_reasons.hpp"

#include <bpf/btf.h>

#include <cctype>

namespace tcpstatesd {

namespace {

constexpr std::string_view kPrefix = "SK_RST_REASON_";
// Reasons are kept in a byte (trace's events, the metrics' series keys), 255 being "other".
constexpr uint64_t kNamed = 255;

// SK_RST_REASON_TCP_ABORT_ON_CLOSE -> tcp_abort_on_close.
std::string label_value(std::string_view enumerator) {
    if (enumerator.starts_with(kPrefix)) enumerator.remove_prefix(kPrefix.size());
    std::string value(enumerator);
    for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return value;
}

}  // namespace

ResetReasons::ResetReasons() : names_{"not_specified"} {}

ResetReasons::ResetReasons(const btf* types) : ResetReasons() {
    if (!types) return;
    const int id = btf__find_by_name_kind(types, "sk_rst_reason", BTF_KIND_ENUM);
    if (id < 0) return;
    const btf_type* type = btf__type_by_id(types, id);
    const struct btf_enum* values = btf_enum(type);
    for (int i = 0; i < btf_vlen(type); ++i) {
        const auto value = static_cast<uint32_t>(values[i].val);
        const char* enumerator = btf__name_by_offset(types, values[i].name_off);
        // SK_RST_REASON_MAX counts the reasons: the kernel never passes it.
        if (value >= kNamed || !enumerator || std::string_view(enumerator) == "SK_RST_REASON_MAX")
            continue;
        if (names_.size() <= value) names_.resize(value + 1);
        names_[value] = label_value(enumerator);
    }
}

std::string_view ResetReasons::name(uint64_t reason) const {
    return reason < names_.size() ? std::string_view(names_[reason]) : std::string_view();
}

}  // namespace tcpstatesd

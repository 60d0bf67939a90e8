#include "labels/label_values.hpp"

namespace tcpstatesd {

LabelValues::LabelValues(std::vector<std::string> reserved, uint32_t limit)
    : reserved_(reserved.size()), limit_(limit) {
    for (auto& name : reserved) values_.push_back({std::move(name), 0, true, false});
}

LabelValues::Admission LabelValues::admit(std::string_view value, uint64_t now, bool may_replace) {
    for (uint32_t i = 0; i < reserved_; ++i)
        if (values_[i].name == value) return {i};
    if (auto found = index_.find(std::string(value)); found != index_.end()) {
        values_[found->second].last_used = now;
        return {found->second};
    }
    Admission admission;
    if (index_.size() < limit_) {
        admission.index = static_cast<uint32_t>(values_.size());
        values_.emplace_back();
    } else if (gone_ == 0 || !may_replace) {
        return {kOther, false, true};
    } else {
        // Full: the gone value used least recently makes room.
        uint32_t oldest = kOther;
        for (uint32_t i = static_cast<uint32_t>(reserved_); i < values_.size(); ++i)
            if (values_[i].in_use && values_[i].gone &&
                (oldest == kOther || values_[i].last_used < values_[oldest].last_used))
                oldest = i;
        index_.erase(values_[oldest].name);
        admission = {oldest, true, false};
        --gone_;
        ++evictions_;
    }
    values_[admission.index] = {std::string(value), now, true, false};
    index_.emplace(values_[admission.index].name, admission.index);
    return admission;
}

uint32_t LabelValues::find(std::string_view value) const {
    for (uint32_t i = 0; i < reserved_; ++i)
        if (values_[i].name == value) return i;
    auto found = index_.find(std::string(value));
    return found == index_.end() ? kOther : found->second;
}

void LabelValues::mark_gone(const std::function<bool(std::string_view)>& gone) {
    gone_ = 0;
    for (auto& [name, index] : index_) {
        values_[index].gone = gone(name);
        gone_ += values_[index].gone ? 1 : 0;
    }
}

}  // namespace tcpstatesd

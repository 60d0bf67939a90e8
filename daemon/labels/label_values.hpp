// The values one label takes, each with a small index the metrics key their series by: a few
// reserved values ("other", and for cgroups "unknown"), then at most `limit` admitted ones.
// A value that no longer exists (a removed cgroup, a port nobody listens on any more) is
// marked gone; when the set is full, a new value takes the place of the gone one used least
// recently, whose series the caller removes. So memory is bounded by the limit, and values
// of things that came and went do not pile up.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tcpstatesd {

class LabelValues {
public:
    static constexpr uint32_t kOther = 0;  // always reserved[0] == "other"

    struct Admission {
        uint32_t index = kOther;
        bool evicted = false;  // index belonged to another value, whose series must go
        bool refused = false;  // the set was full: index is kOther
    };

    LabelValues(std::vector<std::string> reserved, uint32_t limit);

    // The index of `value`, admitting it if there is room (made by replacing a gone value
    // only if `may_replace`). `now` orders values by last use.
    Admission admit(std::string_view value, uint64_t now, bool may_replace = true);
    void touch(uint32_t index, uint64_t now) { values_[index].last_used = now; }
    // Marks each admitted value gone or not; gone ones can be replaced when the set is full.
    void mark_gone(const std::function<bool(std::string_view)>& gone);
    // Values beyond a lowered limit stay until they are gone and replaced.
    void set_limit(uint32_t limit) { limit_ = limit; }

    std::string_view name(uint32_t index) const { return values_[index].name; }
    // The index of an admitted or reserved value, else kOther. Admits nothing.
    uint32_t find(std::string_view value) const;
    // Indexes in use so far (reserved ones included): names are name(0) .. name(size() - 1).
    uint32_t size() const { return static_cast<uint32_t>(values_.size()); }
    // Admitted values now (reserved ones not included).
    size_t admitted() const { return index_.size(); }
    // Whether an admitted value is marked gone (so a new one could take its place).
    bool has_gone() const { return gone_ > 0; }
    // Whether admitting `value` with may_replace would replace a gone value: it is neither
    // reserved nor admitted, the set is full, and a value is gone.
    bool would_replace(std::string_view value) const {
        return find(value) == kOther && value != values_[kOther].name && index_.size() >= limit_ &&
               gone_ > 0;
    }
    uint64_t evictions() const { return evictions_; }

private:
    struct Value {
        std::string name;
        uint64_t last_used = 0;
        bool in_use = false;
        bool gone = false;
    };

    size_t reserved_;
    uint32_t limit_;
    std::vector<Value> values_;
    std::unordered_map<std::string, uint32_t> index_;  // admitted values only
    size_t gone_ = 0;                                  // admitted values marked gone
    uint64_t evictions_ = 0;
};

}  // namespace tcpstatesd

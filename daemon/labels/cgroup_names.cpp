#include "labels/cgroup_names.hpp"

#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "common/read_file.hpp"

namespace tcpstatesd {

namespace {

// Ids a walk did not find, remembered so that each is looked for once; beyond this many the
// memory is cleared (and an id may cost one more walk), so that it stays bounded.
constexpr size_t kMaxMissingIds = 4096;
// Deeper cgroups are not named (systemd nests a few levels, Kubernetes five).
constexpr int kMaxDepth = 16;

std::vector<std::string_view> split(std::string_view text, char separator) {
    std::vector<std::string_view> parts;
    while (true) {
        const size_t end = text.find(separator);
        parts.push_back(text.substr(0, end));
        if (end == std::string_view::npos) return parts;
        text.remove_prefix(end + 1);
    }
}

// mountinfo escapes spaces and a few other characters in paths as \ooo.
std::string unescape_octal(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 3 < text.size()) {
            const std::string_view digits = text.substr(i + 1, 3);
            if (digits.find_first_not_of("01234567") == std::string::npos) {
                out += static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 +
                                         (digits[2] - '0'));
                i += 3;
                continue;
            }
        }
        out += text[i];
    }
    return out;
}

}  // namespace

std::optional<std::string> find_cgroup2_mount(std::string_view mountinfo) {
    for (std::string_view line : split(mountinfo, '\n')) {
        // "36 35 0:30 / /sys/fs/cgroup/unified rw,... shared:10 - cgroup2 cgroup2 rw,..."
        const size_t dash = line.find(" - ");
        if (dash == std::string_view::npos) continue;
        const auto fields = split(line.substr(0, dash), ' ');
        const auto after = split(line.substr(dash + 3), ' ');
        if (fields.size() >= 5 && !after.empty() && after[0] == "cgroup2")
            return unescape_octal(fields[4]);
    }
    return std::nullopt;
}

std::string cgroup_display_name(std::string_view path) {
    std::string_view unit;
    for (std::string_view part : split(path, '/'))
        if (part.ends_with(".service") || part.ends_with(".scope")) unit = part;
    return std::string(unit.empty() ? path : unit);
}

CgroupNames::CgroupNames(std::string root) : root_(std::move(root)) {
    if (root_.empty()) {
        try {
            root_ = find_cgroup2_mount(read_file("/proc/self/mountinfo", 1 << 20)).value_or("");
        } catch (const std::exception& e) {
            spdlog::warn("reading /proc/self/mountinfo: {}", e.what());
        }
        if (root_.empty())
            spdlog::warn("no cgroup2 file system is mounted: sockets' cgroups have no names");
    }
}

std::optional<std::string> CgroupNames::path(uint64_t id) {
    if (auto found = paths_.find(id); found != paths_.end()) return found->second;
    if (root_.empty() || missing_.contains(id)) return std::nullopt;
    walk();
    if (auto found = paths_.find(id); found != paths_.end()) return found->second;
    if (missing_.size() >= kMaxMissingIds) missing_.clear();
    missing_.insert(id);
    return std::nullopt;
}

std::optional<std::string> CgroupNames::known_path(uint64_t id) const {
    auto found = paths_.find(id);
    if (found == paths_.end()) return std::nullopt;
    return found->second;
}

bool CgroupNames::exists(std::string_view display_name) const {
    return display_names_.contains(std::string(display_name));
}

bool CgroupNames::refresh(std::chrono::steady_clock::duration age) {
    if (root_.empty() || std::chrono::steady_clock::now() - last_walk_ < age) return false;
    walk();
    return true;
}

void CgroupNames::walk() {
    ++walks_;
    last_walk_ = std::chrono::steady_clock::now();
    paths_.clear();
    display_names_.clear();
    struct stat root_stat {};
    if (stat(root_.c_str(), &root_stat) != 0) {
        spdlog::warn("reading the cgroup2 file system at {}: {}", root_, std::strerror(errno));
        return;
    }
    paths_.emplace(root_stat.st_ino, "/");
    display_names_.insert("/");
    // Depth-first; d_ino of a cgroup directory is its id. Paths below the root start with "/".
    std::vector<std::pair<std::string, int>> pending{{"", 0}};
    while (!pending.empty()) {
        const auto [path, depth] = pending.back();
        pending.pop_back();
        const std::string full = root_ + path;
        DIR* listing = opendir(full.c_str());
        if (!listing) continue;  // removed meanwhile
        while (const dirent* entry = readdir(listing)) {
            if (entry->d_type != DT_DIR || entry->d_name[0] == '.') continue;
            std::string child = path + "/" + entry->d_name;
            display_names_.insert(cgroup_display_name(child));
            paths_.emplace(entry->d_ino, child);
            if (depth + 1 < kMaxDepth) pending.emplace_back(std::move(child), depth + 1);
        }
        closedir(listing);
    }
}

}  // namespace tcpstatesd

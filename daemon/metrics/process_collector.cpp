#include "metrics/process_collector.hpp"

#include <dirent.h>
#include <unistd.h>

#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <optional>
#include <sstream>
#include <vector>

#include "common/read_file.hpp"
#include "metrics/metric_family.hpp"

namespace tcpstatesd {

namespace {

// /proc/stat, the largest file read here, has about 100 bytes per CPU and one line of
// interrupt counts.
constexpr size_t kMaxProcFileBytes = 1u << 20;

std::optional<std::string> read_proc_file(const std::string& path) {
    try {
        return read_file(path, kMaxProcFileBytes);
    } catch (const FileError& e) {
        spdlog::debug("process metrics: {}", e.what());
        return std::nullopt;
    }
}

std::optional<double> to_number(std::string_view text) {
    double value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

std::vector<std::string_view> split_spaces(std::string_view text) {
    std::vector<std::string_view> fields;
    while (true) {
        const auto start = text.find_first_not_of(" \t\n");
        if (start == std::string_view::npos) {
            return fields;
        }
        text.remove_prefix(start);
        const auto end = text.find_first_of(" \t\n");
        fields.push_back(text.substr(0, end));
        if (end == std::string_view::npos) {
            return fields;
        }
        text.remove_prefix(end);
    }
}

void add(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help,
         prometheus::MetricType type, double value) {
    out.push_back(single_sample(name, help, type, value));
}

// The fields of /proc/<pid>/stat we use, numbered as in proc(5).
struct ProcStat {
    double utime_ticks, stime_ticks, num_threads, starttime_ticks, vsize_bytes, rss_pages;
};

std::optional<ProcStat> parse_proc_stat(const std::string& text) {
    // comm (field 2) is in parentheses and may itself contain spaces and ')'.
    const auto comm_end = text.rfind(')');
    if (comm_end == std::string::npos) {
        return std::nullopt;
    }
    const auto fields = split_spaces(std::string_view(text).substr(comm_end + 1));
    // fields[0] is field 3 (state).
    auto field = [&](size_t number) -> std::optional<double> {
        return number - 3 < fields.size() ? to_number(fields[number - 3]) : std::nullopt;
    };
    const auto utime = field(14), stime = field(15), threads = field(20), start = field(22),
               vsize = field(23), rss = field(24);
    if (!utime || !stime || !threads || !start || !vsize || !rss) {
        return std::nullopt;
    }
    return ProcStat{*utime, *stime, *threads, *start, *vsize, *rss};
}

// The rest of the first line of the file at `path` that starts with `prefix`.
std::optional<std::string> line_after(const std::string& path, std::string_view prefix) {
    const auto text = read_proc_file(path);
    if (!text) {
        return std::nullopt;
    }
    std::istringstream lines(*text);
    for (std::string line; std::getline(lines, line);) {
        if (line.starts_with(prefix)) {
            return line.substr(prefix.size());
        }
    }
    return std::nullopt;
}

std::optional<double> boot_time(const std::string& proc) {
    const auto rest = line_after(proc + "/stat", "btime ");
    return rest ? to_number(*rest) : std::nullopt;
}

std::optional<double> max_open_files(const std::string& proc) {
    const auto rest = line_after(proc + "/self/limits", "Max open files");
    if (!rest) {
        return std::nullopt;
    }
    // Soft limit first; "unlimited" has no number and yields no metric.
    const auto fields = split_spaces(*rest);
    return fields.empty() ? std::nullopt : to_number(fields.front());
}

std::optional<double> open_files(const std::string& proc) {
    const std::string path = proc + "/self/fd";
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) {
        spdlog::debug("process metrics: cannot open {}", path);
        return std::nullopt;
    }
    // The directory stream's own descriptor shows up in the listing; it is not the process's.
    const std::string own = std::to_string(dirfd(dir));
    double count = 0;
    while (const dirent* entry = readdir(dir)) {
        const std::string_view name = entry->d_name;
        if (name != "." && name != ".." && name != own) {
            ++count;
        }
    }
    closedir(dir);
    return count;
}

}  // namespace

ProcessCollector::ProcessCollector(std::string proc) : proc_(std::move(proc)) {}

Collection ProcessCollector::collect() const {
    using prometheus::MetricType;
    std::vector<prometheus::MetricFamily> out;
    try {
        const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
        const double page_size = static_cast<double>(sysconf(_SC_PAGESIZE));

        const auto stat_text = read_proc_file(proc_ + "/self/stat");
        const auto stat = stat_text ? parse_proc_stat(*stat_text) : std::nullopt;
        if (stat_text && !stat) {
            spdlog::debug("process metrics: cannot parse {}/self/stat", proc_);
        }
        if (stat) {
            add(out, "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.", MetricType::Counter,
                (stat->utime_ticks + stat->stime_ticks) / ticks_per_second);
            add(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
                MetricType::Gauge, stat->rss_pages * page_size);
            add(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                MetricType::Gauge, stat->vsize_bytes);
            add(out, "process_threads", "Number of OS threads in the process.", MetricType::Gauge,
                stat->num_threads);
            if (const auto boot = boot_time(proc_)) {
                add(out, "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
                    *boot + stat->starttime_ticks / ticks_per_second);
            }
        }
        if (const auto fds = open_files(proc_)) {
            add(out, "process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                *fds);
        }
        if (const auto max_fds = max_open_files(proc_)) {
            add(out, "process_max_fds", "Maximum number of open file descriptors.",
                MetricType::Gauge, *max_fds);
        }
    } catch (const std::exception& e) {
        // Only allocation can fail here; a scrape without process metrics beats a failed one.
        spdlog::debug("process metrics: {}", e.what());
    }
    return {std::move(out), {}};
}

}  // namespace tcpstatesd

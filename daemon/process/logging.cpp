#include "process/logging.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/json.hpp"

namespace tcpstatesd {

namespace {

void append(spdlog::memory_buf_t& dest, std::string_view text) {
    dest.append(text.data(), text.data() + text.size());
}

// RFC 3339 in UTC with milliseconds: sorts as text, and means the same on every host.
void append_time(spdlog::memory_buf_t& dest, spdlog::log_clock::time_point time) {
    const auto since_epoch = time.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t t = static_cast<std::time_t>(seconds.count());
    std::tm utc{};
    gmtime_r(&t, &utc);
    char text[32];
    const int n = std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                utc.tm_min, utc.tm_sec, static_cast<int>(millis));
    append(dest, std::string_view(text, static_cast<size_t>(n)));
}

std::string_view level_name(spdlog::level::level_enum level) {
    const auto& name = spdlog::level::to_string_view(level);
    return {name.data(), name.size()};
}

class TextFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        append_time(dest, msg.time);
        dest.push_back(' ');
        append(dest, level_name(msg.level));
        dest.push_back(' ');
        append(dest, std::string_view(msg.payload.data(), msg.payload.size()));
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<TextFormatter>();
    }
};

class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        append(dest, "{\"time\":\"");
        append_time(dest, msg.time);
        append(dest, "\",\"level\":\"");
        append(dest, level_name(msg.level));
        append(dest, "\",\"message\":");
        std::string message;
        append_json_string(message, std::string_view(msg.payload.data(), msg.payload.size()));
        append(dest, message);
        append(dest, "}\n");
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>();
    }
};

class JournalFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        char prefix[8];
        std::snprintf(prefix, sizeof prefix, "<%d>", syslog_priority(msg.level));
        // journald reads one entry per line: each line gets the priority, not only the first.
        std::string_view rest(msg.payload.data(), msg.payload.size());
        do {
            const size_t end = rest.find('\n');
            append(dest, prefix);
            append(dest, rest.substr(0, end));
            dest.push_back('\n');
            rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        } while (!rest.empty());
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JournalFormatter>();
    }

private:
    static int syslog_priority(spdlog::level::level_enum level) {
        switch (level) {
            case spdlog::level::trace:
            case spdlog::level::debug:
                return 7;  // LOG_DEBUG
            case spdlog::level::warn:
                return 4;  // LOG_WARNING
            case spdlog::level::err:
                return 3;  // LOG_ERR
            case spdlog::level::critical:
                return 2;  // LOG_CRIT
            default:
                return 6;  // LOG_INFO
        }
    }
};

}  // namespace

bool is_journal_stream(int fd, const char* journal_stream) {
    if (!journal_stream) return false;
    uintmax_t device = 0, inode = 0;
    char trailing = 0;
    if (std::sscanf(journal_stream, "%" SCNuMAX ":%" SCNuMAX "%c", &device, &inode, &trailing) != 2)
        return false;
    struct stat st {};
    if (fstat(fd, &st) != 0) return false;
    return static_cast<uintmax_t>(st.st_dev) == device &&
           static_cast<uintmax_t>(st.st_ino) == inode;
}

std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format) {
    if (format == LogFormat::Json) return std::make_unique<JsonFormatter>();
    return std::make_unique<TextFormatter>();
}

std::unique_ptr<spdlog::formatter> make_journal_formatter() {
    return std::make_unique<JournalFormatter>();
}

void setup_logging(spdlog::level::level_enum level, LogFormat format) {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    sink->set_formatter(is_journal_stream(STDERR_FILENO, std::getenv("JOURNAL_STREAM"))
                            ? make_journal_formatter()
                            : make_log_formatter(format));
    auto logger = std::make_shared<spdlog::logger>("tcpstatesd", std::move(sink));
    logger->set_level(level);
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace tcpstatesd

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

#include "process/logging.hpp"
#include "temp_dir.hpp"

using tcpstatesd::LogFormat;
using tcpstatesd::test::TempDir;

namespace {

// 2026-11-26T05:30:00.123Z
const spdlog::log_clock::time_point kTime{std::chrono::milliseconds(1795671000123LL)};

std::string format(LogFormat format, spdlog::level::level_enum level, std::string_view message) {
    const spdlog::details::log_msg msg(kTime, spdlog::source_loc{}, "tcpstatesd", level,
                                       spdlog::string_view_t(message.data(), message.size()));
    spdlog::memory_buf_t out;
    tcpstatesd::make_log_formatter(format)->format(msg, out);
    return std::string(out.data(), out.size());
}

std::string json_line(std::string_view level, std::string_view escaped_message) {
    return "{\"time\":\"2026-11-26T05:30:00.123Z\",\"level\":\"" + std::string(level) +
           "\",\"message\":\"" + std::string(escaped_message) + "\"}\n";
}

// A temporary file standing in for stderr while it lives.
class CapturedStderr {
public:
    CapturedStderr() : path_(dir_.path() + "/stderr") {
        const int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            throw std::runtime_error("cannot create " + path_ + ": " + std::strerror(errno));
        std::fflush(stderr);
        saved_ = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    ~CapturedStderr() { restore(); }
    CapturedStderr(const CapturedStderr&) = delete;
    CapturedStderr& operator=(const CapturedStderr&) = delete;

    std::string text() {
        restore();
        std::ifstream in(path_);
        std::stringstream content;
        content << in.rdbuf();
        return content.str();
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        dup2(saved_, STDERR_FILENO);
        close(saved_);
        saved_ = -1;
    }
    TempDir dir_;
    std::string path_;
    int saved_ = -1;
};

}  // namespace

TEST_CASE("logging: text lines carry a UTC timestamp, the level and the message") {
    CHECK(format(LogFormat::Text, spdlog::level::info, "listening on 0.0.0.0:9977") ==
          "2026-11-26T05:30:00.123Z info listening on 0.0.0.0:9977\n");
    CHECK(format(LogFormat::Text, spdlog::level::warn, "w") ==
          "2026-11-26T05:30:00.123Z warning w\n");
    CHECK(format(LogFormat::Text, spdlog::level::err, "e") == "2026-11-26T05:30:00.123Z error e\n");
}

TEST_CASE("logging: JSON lines are one object with time, level and message") {
    CHECK(format(LogFormat::Json, spdlog::level::info, "listening on 0.0.0.0:9977") ==
          json_line("info", "listening on 0.0.0.0:9977"));
    CHECK(format(LogFormat::Json, spdlog::level::debug, "") == json_line("debug", ""));
}

TEST_CASE("logging: JSON messages are escaped into valid JSON strings") {
    CHECK(format(LogFormat::Json, spdlog::level::err, R"(file "a\b.yaml")") ==
          json_line("error", R"(file \"a\\b.yaml\")"));
    CHECK(format(LogFormat::Json, spdlog::level::err, "line 1\nline 2\r\tend") ==
          json_line("error", R"(line 1\nline 2\r\tend)"));
    CHECK(format(LogFormat::Json, spdlog::level::err, std::string_view("nul\0bell\x07\x1f", 10)) ==
          json_line("error", R"(nul\u0000bell\u0007\u001f)"));
    // Valid UTF-8 passes through; invalid bytes (a stray continuation byte, a truncated
    // sequence, an overlong '/', a surrogate) become U+FFFD.
    CHECK(
        format(LogFormat::Json, spdlog::level::info, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        json_line("info", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK(format(LogFormat::Json, spdlog::level::info, "a\x80z\xc3") ==
          json_line("info", R"(a\ufffdz\ufffd)"));
    CHECK(format(LogFormat::Json, spdlog::level::info, "\xc0\xaf \xed\xa0\x80") ==
          json_line("info", R"(\ufffd\ufffd \ufffd\ufffd\ufffd)"));
}

static std::string format_journal(spdlog::level::level_enum level, std::string_view message) {
    const spdlog::details::log_msg msg(kTime, spdlog::source_loc{}, "tcpstatesd", level,
                                       spdlog::string_view_t(message.data(), message.size()));
    spdlog::memory_buf_t out;
    tcpstatesd::make_journal_formatter()->format(msg, out);
    return std::string(out.data(), out.size());
}

TEST_CASE("logging: journal lines carry the syslog priority and no timestamp") {
    CHECK(format_journal(spdlog::level::trace, "t") == "<7>t\n");
    CHECK(format_journal(spdlog::level::debug, "d") == "<7>d\n");
    CHECK(format_journal(spdlog::level::info, "ready") == "<6>ready\n");
    CHECK(format_journal(spdlog::level::warn, "w") == "<4>w\n");
    CHECK(format_journal(spdlog::level::err, "e") == "<3>e\n");
    CHECK(format_journal(spdlog::level::critical, "c") == "<2>c\n");
    CHECK(format_journal(spdlog::level::info, "") == "<6>\n");
}

TEST_CASE("logging: every line of a multi-line message keeps the priority in the journal") {
    CHECK(format_journal(spdlog::level::err, "a.yaml:3:1: bad\n  listen: x\n") ==
          "<3>a.yaml:3:1: bad\n<3>  listen: x\n");
}

TEST_CASE("logging: JOURNAL_STREAM names the journal only if it matches the fd's device:inode") {
    const TempDir dir;
    const int fd = open(dir.write("journal", "").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    const std::string dev = std::to_string(st.st_dev), ino = std::to_string(st.st_ino);

    CHECK(tcpstatesd::is_journal_stream(fd, (dev + ":" + ino).c_str()));
    CHECK_FALSE(
        tcpstatesd::is_journal_stream(fd, (dev + ":" + std::to_string(st.st_ino + 1)).c_str()));
    CHECK_FALSE(tcpstatesd::is_journal_stream(fd, (dev + ":" + ino + "x").c_str()));
    CHECK_FALSE(tcpstatesd::is_journal_stream(fd, ino.c_str()));
    CHECK_FALSE(tcpstatesd::is_journal_stream(fd, ""));
    CHECK_FALSE(tcpstatesd::is_journal_stream(fd, nullptr));
    close(fd);
}

TEST_CASE("logging: outside systemd the default logger writes the chosen format to stderr") {
    const auto previous = spdlog::default_logger();
    const char* journal = std::getenv("JOURNAL_STREAM");
    const std::string saved_journal = journal ? journal : "";
    unsetenv("JOURNAL_STREAM");

    std::string text;
    {
        CapturedStderr captured;
        tcpstatesd::setup_logging(spdlog::level::info, LogFormat::Json);
        spdlog::debug("below the level");
        spdlog::warn("config {}:{}: \"x\" is unknown", "a.yaml", 3);
        spdlog::default_logger()->flush();
        text = captured.text();
    }
    spdlog::set_default_logger(previous);
    if (journal) setenv("JOURNAL_STREAM", saved_journal.c_str(), 1);

    INFO(text);
    CHECK(text.find("below the level") == std::string::npos);
    const std::string suffix =
        R"(","level":"warning","message":"config a.yaml:3: \"x\" is unknown"})"
        "\n";
    REQUIRE(text.size() > suffix.size());
    CHECK(text.rfind("{\"time\":\"20", 0) == 0);
    CHECK(text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0);
    CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

TEST_CASE("logging: under systemd (stderr is JOURNAL_STREAM) lines carry priorities instead") {
    const auto previous = spdlog::default_logger();
    const char* journal = std::getenv("JOURNAL_STREAM");
    const std::string saved_journal = journal ? journal : "";

    std::string text;
    {
        CapturedStderr captured;
        struct stat st {};
        REQUIRE(fstat(STDERR_FILENO, &st) == 0);
        const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
        setenv("JOURNAL_STREAM", stream.c_str(), 1);
        tcpstatesd::setup_logging(spdlog::level::info, LogFormat::Json);
        spdlog::debug("below the level");
        spdlog::info("ready");
        spdlog::error("cannot listen on {}", ":9977");
        spdlog::default_logger()->flush();
        text = captured.text();
    }
    spdlog::set_default_logger(previous);
    if (journal)
        setenv("JOURNAL_STREAM", saved_journal.c_str(), 1);
    else
        unsetenv("JOURNAL_STREAM");

    CHECK(text == "<6>ready\n<3>cannot listen on :9977\n");
}

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "common/fd.hpp"
#include "runtime/reactor.hpp"

using tcpstatesd::Reactor;
using namespace std::chrono_literals;

namespace {

// Routes the default logger into a string while it lives.
class CapturedLog {
public:
    CapturedLog() : previous_(spdlog::default_logger()) {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
        sink->set_pattern("%l %v");
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    }
    ~CapturedLog() { spdlog::set_default_logger(previous_); }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;

    std::string text() const { return text_.str(); }

private:
    std::shared_ptr<spdlog::logger> previous_;
    std::ostringstream text_;
};

}  // namespace

TEST_CASE("reactor: stop() ends run() with the code it was given") {
    Reactor reactor;
    reactor.every(1ms, "stopping", [&] { reactor.stop(7); });
    CHECK(reactor.run() == 7);
}

TEST_CASE("reactor: a timer handler that throws stops the loop with exit code 1 and its name") {
    CapturedLog log;
    Reactor reactor;
    int runs = 0;
    reactor.every(1ms, "counting connections", [&] {
        ++runs;
        throw std::runtime_error("the map is gone");
    });
    CHECK(reactor.run() == Reactor::kHandlerFailed);
    CHECK(runs == 1);
    CHECK(log.text() == "error counting connections: the map is gone\n");
}

TEST_CASE("reactor: an fd handler that throws something unknown stops the loop too") {
    CapturedLog log;
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    const tcpstatesd::Fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
    REQUIRE(write(write_end.get(), "x", 1) == 1);
    Reactor reactor;
    reactor.on_readable(read_end.get(), "reading events", [] { throw 42; });
    CHECK(reactor.run() == Reactor::kHandlerFailed);
    CHECK(log.text() == "error reading events: unknown exception\n");
}

#include "http/shared_bodies.hpp"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using tcpstatesd::Encoding;
using tcpstatesd::ExpositionFormat;
using tcpstatesd::kFreshBodies;
using tcpstatesd::SharedBodies;
using namespace std::chrono_literals;

constexpr ExpositionFormat kText = ExpositionFormat::Text;

namespace {

// The state letter of one thread of this process (/proc/self/task/TID/stat): R running,
// S sleeping.
char thread_state(pid_t tid) {
    std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const size_t end = text.rfind(')');  // the name may hold spaces and parentheses
    return end == std::string::npos || end + 2 >= text.size() ? '?' : text[end + 2];
}

// Renders "[protobuf ]<encoding>:<n>", n counting renders from 1.
struct Counting {
    std::atomic<int> renders{0};
    SharedBodies bodies{[this](ExpositionFormat format, Encoding encoding) {
        const int n = ++renders;
        return std::string(format == ExpositionFormat::Protobuf ? "protobuf " : "") +
               (encoding == Encoding::Gzip ? "gzip:" : "identity:") + std::to_string(n);
    }};
};

}  // namespace

TEST_CASE("shared bodies: each scrape renders while fewer than two bodies are being sent") {
    Counting c;
    auto first = c.bodies.get(kText, Encoding::Identity, 30s);
    auto second = c.bodies.get(kText, Encoding::Identity, 30s);
    CHECK(*first == "identity:1");
    CHECK(*second == "identity:2");
    CHECK(c.bodies.alive(kText, Encoding::Identity) == kFreshBodies);
    // Two are held by slow readers: the next scrapes get the newest, nothing new is made.
    for (int i = 0; i < 20; ++i) CHECK(c.bodies.get(kText, Encoding::Identity, 30s) == second);
    CHECK(c.renders == 2);
    CHECK(c.bodies.alive(kText, Encoding::Identity) == 2);
    // Each encoding and each format on its own.
    CHECK(*c.bodies.get(kText, Encoding::Gzip, 30s) == "gzip:3");
    auto protobuf = c.bodies.get(ExpositionFormat::Protobuf, Encoding::Identity, 30s);
    CHECK(*protobuf == "protobuf identity:4");
    CHECK(c.bodies.alive(ExpositionFormat::Protobuf, Encoding::Identity) == 1);
    protobuf.reset();
    // Once a reader is done, the next scrape is fresh again.
    first.reset();
    CHECK(c.bodies.alive(kText, Encoding::Identity) == 1);
    CHECK(*c.bodies.get(kText, Encoding::Identity, 30s) == "identity:5");
    second.reset();
    CHECK(c.bodies.alive(kText, Encoding::Identity) == 0);
}

TEST_CASE("shared bodies: a body older than the response deadline is not handed out") {
    Counting c;
    auto first = c.bodies.get(kText, Encoding::Identity, 50ms);
    auto second = c.bodies.get(kText, Encoding::Identity, 50ms);
    std::this_thread::sleep_for(60ms);  // the newest is now older than the deadline
    auto third = c.bodies.get(kText, Encoding::Identity, 50ms);
    CHECK(*third == "identity:3");
    CHECK(c.bodies.get(kText, Encoding::Identity, 50ms) == third);  // young again: shared
}

TEST_CASE("shared bodies: scrapes arriving during a render share it") {
    std::atomic<bool> release{false};
    std::atomic<int> renders{0};
    SharedBodies bodies([&](ExpositionFormat, Encoding) {
        ++renders;
        while (!release) std::this_thread::sleep_for(1ms);
        return std::string("slow");
    });
    std::vector<SharedBodies::Body> got(8);
    std::vector<std::atomic<pid_t>> tids(got.size());
    std::vector<std::thread> threads;
    auto scrape = [&](size_t i) {
        tids[i] = gettid();
        got[i] = bodies.get(kText, Encoding::Identity, 30s);
    };
    threads.emplace_back(scrape, 0);
    while (renders == 0) std::this_thread::sleep_for(1ms);
    for (size_t i = 1; i < got.size(); ++i) threads.emplace_back(scrape, i);
    // Released once every other scrape sleeps: inside get(), that is waiting for the render
    // (no thread sleeps while holding its lock, and the render cannot end before release).
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    auto all_waiting = [&] {
        for (size_t i = 1; i < tids.size(); ++i)
            if (tids[i] == 0 || thread_state(tids[i]) != 'S') return false;
        return true;
    };
    while (!all_waiting() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    REQUIRE(all_waiting());
    release = true;
    for (auto& t : threads) t.join();
    CHECK(renders == 1);
    for (const auto& body : got) CHECK(body == got[0]);
}

TEST_CASE("shared bodies: a failing render throws to its scrape; the next one renders again") {
    int calls = 0;
    SharedBodies bodies([&](ExpositionFormat, Encoding) -> std::string {
        if (++calls == 1) throw std::runtime_error("collect failed");
        return "ok";
    });
    CHECK_THROWS_WITH(bodies.get(kText, Encoding::Identity, 30s), "collect failed");
    CHECK(*bodies.get(kText, Encoding::Identity, 30s) == "ok");
    CHECK(bodies.alive(kText, Encoding::Identity) == 0);  // the temporary above is gone
}

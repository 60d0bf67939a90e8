// The rendered telemetry bodies, shared between concurrent scrapes so that the memory they take
// is bounded by the configuration (the size of one body), not by the number or speed of the
// clients. Each connection sending a body holds a reference; a body lives while any does.
//
// A body's kind is its exposition format and its encoding; the rules below hold per kind.
// A scrape renders a new body unless kFreshBodies bodies of its kind are still being sent;
// then it is given the newest of them, provided that one is younger than the response
// deadline (web config http_server_config.write_timeout_seconds, D), else it renders anyway.
// Scrapes that arrive while their kind is being rendered wait for that render and share
// it, and only one render runs at a time. Every response is sent within D or cut off
// (connection_deadlines.hpp), so a body is joined only while younger than D and lives at most
// 2 D: at most four bodies of each kind are alive at once, two while the slow readers
// hold fewer (derivation in docs/operations.md, "Securing the endpoint").
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "exposition/exposition_format.hpp"

namespace tcpstatesd {

enum class Encoding { Identity, Gzip };
inline constexpr size_t kEncodings = 2;

inline constexpr size_t kFreshBodies = 2;

class SharedBodies {
public:
    using Clock = std::chrono::steady_clock;
    using Body = std::shared_ptr<const std::string>;
    using Render = std::function<std::string(ExpositionFormat, Encoding)>;

    // `render` makes a new body (collect, serialize, compress); it may throw. Bodies handed
    // out must be released before this object is destroyed.
    explicit SharedBodies(Render render);

    // The body for a scrape wanting `format` in `encoding`, whose response must be sent
    // within `deadline`. Rethrows what the render throws.
    Body get(ExpositionFormat format, Encoding encoding, Clock::duration deadline);

    // Bodies of `format` in `encoding` alive now.
    size_t alive(ExpositionFormat format, Encoding encoding) const;

private:
    struct Slot {
        std::weak_ptr<const std::string> newest;
        Clock::time_point newest_rendered{};
        bool rendering = false;
        unsigned long renders = 0;  // completed or failed, to wake who waits for one
    };

    static constexpr size_t kKinds = kExpositionFormats * kEncodings;
    static size_t kind(ExpositionFormat format, Encoding encoding) {
        return static_cast<size_t>(format) * kEncodings + static_cast<size_t>(encoding);
    }
    Body render_new(std::unique_lock<std::mutex>& lock, ExpositionFormat format, Encoding encoding);

    const Render render_;
    std::array<std::atomic<size_t>, kKinds> alive_{};
    mutable std::mutex mutex_;
    std::condition_variable rendered_;
    bool any_rendering_ = false;
    std::array<Slot, kKinds> slots_;
};

}  // namespace tcpstatesd

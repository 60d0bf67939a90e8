#include "runtime/reactor.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tcpstatesd {

namespace {

void check(int r, const char* what) {
    if (r < 0)
        throw std::runtime_error(std::string("event loop: ") + what + ": " + std::strerror(-r));
}

}  // namespace

void Reactor::UnrefLoop::operator()(sd_event* loop) const {
    sd_event_unref(loop);
}

void Reactor::UnrefSource::operator()(sd_event_source* source) const {
    sd_event_source_unref(source);
}

Reactor::Reactor() {
    sd_event* loop = nullptr;
    check(sd_event_new(&loop), "creating the loop");
    loop_.reset(loop);
}

void Reactor::invoke(Handler& handler) noexcept {
    try {
        handler.run();
        return;
    } catch (const std::exception& e) {
        spdlog::error("{}: {}", handler.what, e.what());
    } catch (...) {
        spdlog::error("{}: unknown exception", handler.what);
    }
    handler.reactor->stop(kHandlerFailed);
}

int Reactor::on_io(sd_event_source*, int, uint32_t, void* userdata) {
    invoke(*static_cast<Handler*>(userdata));
    return 0;
}

int Reactor::on_signal_event(sd_event_source*, const signalfd_siginfo*, void* userdata) {
    invoke(*static_cast<Handler*>(userdata));
    return 0;
}

int Reactor::on_timer(sd_event_source* source, uint64_t, void* userdata) {
    auto& handler = *static_cast<Handler*>(userdata);
    invoke(handler);
    // Re-arm relative to now: a slow handler delays the next run instead of piling up runs.
    sd_event_source_set_time_relative(source, handler.period.count());
    return 0;
}

Reactor::Handler& Reactor::add_handler(std::string what, std::function<void()> run,
                                       std::chrono::microseconds period) {
    handlers_.push_back(
        std::make_unique<Handler>(Handler{this, std::move(what), std::move(run), period}));
    return *handlers_.back();
}

void Reactor::keep(sd_event_source* source) {
    sources_.emplace_back(source);
}

void Reactor::on_readable(int fd, std::string what, std::function<void()> handler) {
    Handler& h = add_handler(std::move(what), std::move(handler));
    sd_event_source* source = nullptr;
    check(sd_event_add_io(loop_.get(), &source, fd, EPOLLIN, on_io, &h), "watching an fd");
    keep(source);
}

void Reactor::on_signal(int signo, std::string what, std::function<void()> handler) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    check(-pthread_sigmask(SIG_BLOCK, &set, nullptr), "blocking a signal");
    Handler& h = add_handler(std::move(what), std::move(handler));
    sd_event_source* source = nullptr;
    check(sd_event_add_signal(loop_.get(), &source, signo, on_signal_event, &h),
          "watching a signal");
    keep(source);
}

void Reactor::every(std::chrono::microseconds period, std::string what,
                    std::function<void()> handler) {
    Handler& h = add_handler(std::move(what), std::move(handler), period);
    sd_event_source* source = nullptr;
    // Accuracy 0 would mean sd-event's default, 250 ms: a 100 ms drain timer fired every 250 ms.
    // A tenth of the period keeps the timer on time and still lets sd-event coalesce wake-ups.
    const uint64_t accuracy = std::max<uint64_t>(1, static_cast<uint64_t>(period.count()) / 10);
    check(sd_event_add_time_relative(loop_.get(), &source, CLOCK_MONOTONIC, period.count(),
                                     accuracy, on_timer, &h),
          "adding a timer");
    keep(source);
    check(sd_event_source_set_enabled(source, SD_EVENT_ON), "enabling a timer");
}

void Reactor::enable_systemd_watchdog() {
    check(sd_event_set_watchdog(loop_.get(), 1), "enabling the watchdog");
}

int Reactor::run() {
    const int r = sd_event_loop(loop_.get());
    check(r, "running");
    return r;
}

void Reactor::stop(int exit_code) {
    sd_event_exit(loop_.get(), exit_code);
}

}  // namespace tcpstatesd

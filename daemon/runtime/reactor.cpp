#include "runtime/reactor.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <systemd/sd-event.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace tcpstatesd {

namespace {

void check(int r, const char* what) {
    if (r < 0)
        throw std::runtime_error(std::string("event loop: ") + what + ": " + std::strerror(-r));
}

int on_io(sd_event_source*, int, uint32_t, void* userdata) {
    static_cast<std::function<void()>*>(userdata)->operator()();
    return 0;
}

int on_signal_event(sd_event_source*, const struct signalfd_siginfo*, void* userdata) {
    static_cast<std::function<void()>*>(userdata)->operator()();
    return 0;
}

}  // namespace

Reactor::Reactor() {
    check(sd_event_new(&loop_), "creating the loop");
}

Reactor::~Reactor() {
    for (sd_event_source* s : sources_) sd_event_source_unref(s);
    sd_event_unref(loop_);
}

void Reactor::add_source(sd_event_source* source, std::unique_ptr<Callback> callback) {
    sources_.push_back(source);
    callbacks_.push_back(std::move(callback));
}

void Reactor::on_readable(int fd, std::function<void()> handler) {
    auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
    sd_event_source* source = nullptr;
    check(sd_event_add_io(loop_, &source, fd, EPOLLIN, on_io, &callback->handler),
          "watching an fd");
    add_source(source, std::move(callback));
}

void Reactor::on_signal(int signo, std::function<void()> handler) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    check(-pthread_sigmask(SIG_BLOCK, &set, nullptr), "blocking a signal");
    auto callback = std::make_unique<Callback>(Callback{std::move(handler)});
    sd_event_source* source = nullptr;
    check(sd_event_add_signal(loop_, &source, signo, on_signal_event, &callback->handler),
          "watching a signal");
    add_source(source, std::move(callback));
}

int Reactor::dispatch(sd_event_source* source, void* userdata) {
    auto* callback = static_cast<Callback*>(userdata);
    callback->handler();
    // Re-arm relative to now: a slow handler delays the next run instead of piling up runs.
    sd_event_source_set_time_relative(source, callback->period.count());
    return 0;
}

void Reactor::every(std::chrono::microseconds period, std::function<void()> handler) {
    auto callback = std::make_unique<Callback>(Callback{std::move(handler), period});
    sd_event_source* source = nullptr;
    check(sd_event_add_time_relative(
              loop_, &source, CLOCK_MONOTONIC, period.count(), 0,
              [](sd_event_source* s, uint64_t, void* userdata) { return dispatch(s, userdata); },
              callback.get()),
          "adding a timer");
    check(sd_event_source_set_enabled(source, SD_EVENT_ON), "enabling a timer");
    add_source(source, std::move(callback));
}

void Reactor::enable_systemd_watchdog() {
    check(sd_event_set_watchdog(loop_, 1), "enabling the watchdog");
}

int Reactor::run() {
    int r = sd_event_loop(loop_);
    check(r, "running");
    return r;
}

void Reactor::stop(int exit_code) {
    sd_event_exit(loop_, exit_code);
}

}  // namespace tcpstatesd

// The event loop: a thin RAII owner of an sd-event loop and of the sources added to it.
// Everything the daemon does on its main thread (events, signals, timers, the systemd
// watchdog) is a callback run from here, one at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

struct sd_event;
struct sd_event_source;

namespace tcpstatesd {

class Reactor {
public:
    Reactor();
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    // Runs `handler` whenever `fd` is readable (level-triggered).
    void on_readable(int fd, std::function<void()> handler);
    // Blocks `signo` in the calling thread and delivers it through the loop. Call before
    // any other thread is started, so that no thread inherits it unblocked.
    void on_signal(int signo, std::function<void()> handler);
    // Runs `handler` every `period`, first after one period.
    void every(std::chrono::microseconds period, std::function<void()> handler);
    // Sends WATCHDOG=1 from the loop when systemd asked for it (WatchdogSec=).
    void enable_systemd_watchdog();

    // Runs until stop(); returns the code given to stop().
    int run();
    void stop(int exit_code);

private:
    struct Callback {
        std::function<void()> handler;
        std::chrono::microseconds period{0};
    };
    void add_source(sd_event_source* source, std::unique_ptr<Callback> callback);
    static int dispatch(sd_event_source* source, void* userdata);

    sd_event* loop_ = nullptr;
    std::vector<sd_event_source*> sources_;
    std::vector<std::unique_ptr<Callback>> callbacks_;
};

}  // namespace tcpstatesd

// The event loop: an RAII owner of an sd-event loop and of the sources added to it.
// Everything the daemon does on its main thread (events, signals, timers, the systemd
// watchdog) is a handler run from here, one at a time. A handler that throws stops the loop:
// the exception is logged with the handler's name and run() returns kHandlerFailed, so the
// process exits non-zero with the message (and systemd restarts it). No exception unwinds
// through sd-event's C frames.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct sd_event;
struct sd_event_source;
struct signalfd_siginfo;

namespace tcpstatesd {

class Reactor {
public:
    // What run() returns after a handler threw.
    static constexpr int kHandlerFailed = 1;

    Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    // `what` names the handler in the error logged when it throws ("reading events").
    // Runs `handler` whenever `fd` is readable (level-triggered).
    void on_readable(int fd, std::string what, std::function<void()> handler);
    // Blocks `signo` in the calling thread and delivers it through the loop. Call before
    // any other thread is started, so that no thread inherits it unblocked.
    void on_signal(int signo, std::string what, std::function<void()> handler);
    // Runs `handler` every `period`, first after one period.
    void every(std::chrono::microseconds period, std::string what, std::function<void()> handler);
    // Sends WATCHDOG=1 from the loop when systemd asked for it (WatchdogSec=).
    void enable_systemd_watchdog();

    // Runs until stop() or a handler throws; returns the code given to stop(), or
    // kHandlerFailed.
    int run();
    void stop(int exit_code);

private:
    struct Handler {
        Reactor* reactor;
        std::string what;
        std::function<void()> run;
        std::chrono::microseconds period{0};
    };
    // Runs the handler; an exception is logged and stops the loop.
    static void invoke(Handler& handler) noexcept;
    static int on_io(sd_event_source* source, int fd, uint32_t events, void* userdata);
    static int on_signal_event(sd_event_source* source, const signalfd_siginfo* info,
                               void* userdata);
    static int on_timer(sd_event_source* source, uint64_t usec, void* userdata);
    Handler& add_handler(std::string what, std::function<void()> run,
                         std::chrono::microseconds period = {});
    void keep(sd_event_source* source);

    struct UnrefLoop {
        void operator()(sd_event* loop) const;
    };
    struct UnrefSource {
        void operator()(sd_event_source* source) const;
    };
    std::unique_ptr<sd_event, UnrefLoop> loop_;
    std::vector<std::unique_ptr<Handler>> handlers_;
    // Declared last: the sources go first, while the handlers they point to still exist.
    std::vector<std::unique_ptr<sd_event_source, UnrefSource>> sources_;
};

}  // namespace tcpstatesd

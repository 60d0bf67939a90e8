#include "runtime/systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstring>
#include <ctime>
#include <string>

#include <spdlog/spdlog.h>

namespace tcpstatesd {

namespace {

// A message systemd never sees delays or fails a start, reload or stop visibly on the systemd
// side; the daemon itself keeps working, so this is a warning, not an error.
void notify(const std::string& message) {
    const int result = sd_notify(0, message.c_str());
    if (result < 0)
        spdlog::warn("could not notify systemd ({}): {}", message.substr(0, message.find('\n')),
                     std::strerror(-result));
}

}  // namespace

void SystemdNotifier::ready() const {
    notify("READY=1");
}

void SystemdNotifier::reloading() const {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const unsigned long long usec = static_cast<unsigned long long>(now.tv_sec) * 1000000ULL +
                                    static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
    notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void SystemdNotifier::stopping() const {
    notify("STOPPING=1");
}

void SystemdNotifier::status(std::string_view line) const {
    std::string message = "STATUS=";
    for (char c : line) message += (c == '\n' || c == '\r') ? ' ' : c;
    notify(message);
}

bool SystemdNotifier::watchdog_enabled() const {
    return sd_watchdog_enabled(0, nullptr) > 0;
}

}  // namespace tcpstatesd

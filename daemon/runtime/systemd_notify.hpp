// Tells the service manager where the daemon is in its life (sd_notify(3)): ready, reloading,
// stopping, a one-line status. When the daemon was not started by systemd with Type=notify
// (no NOTIFY_SOCKET), every call does nothing, so callers never need to ask.
#pragma once

#include <string_view>

namespace tcpstatesd {

class SystemdNotifier {
public:
    // READY=1: start-up (or a reload) is complete and the daemon serves.
    void ready() const;
    // RELOADING=1 with MONOTONIC_USEC=<now>: systemd 253's Type=notify-reload needs the
    // timestamp to match the reload to this message; older systemd ignores it. Send ready()
    // when the reload is done, whether it succeeded or not.
    void reloading() const;
    // STOPPING=1: shutdown has begun.
    void stopping() const;
    // STATUS=<line>, shown by `systemctl status`. Line breaks would start new assignments,
    // so they are sent as spaces.
    void status(std::string_view line) const;
    // True when systemd expects WATCHDOG=1 pings from this process (WatchdogSec= is set).
    bool watchdog_enabled() const;
};

}  // namespace tcpstatesd

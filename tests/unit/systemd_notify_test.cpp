#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>

#include "runtime/systemd_notify.hpp"
#include "temp_dir.hpp"

using tcpstatesd::SystemdNotifier;
using tcpstatesd::test::TempDir;

namespace {

// Sets an environment variable for one scope and puts back what was there before.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            setenv(name, value, 1);
        else
            unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_)
            setenv(name_, old_->c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

// The service manager's end: a datagram socket the test binds, named by NOTIFY_SOCKET.
class FakeNotifySocket {
public:
    FakeNotifySocket() : path_(dir_.path() + "/notify") {
        sockaddr_un address{};
        if (path_.size() >= sizeof address.sun_path)
            throw std::runtime_error("socket path " + path_ + " longer than " +
                                     std::to_string(sizeof address.sun_path - 1) +
                                     " bytes: set TMPDIR to a shorter directory");
        fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        address.sun_family = AF_UNIX;
        path_.copy(address.sun_path, sizeof address.sun_path - 1);
        if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            throw std::runtime_error("cannot bind " + path_);
        env_.emplace("NOTIFY_SOCKET", path_.c_str());
    }
    ~FakeNotifySocket() {
        env_.reset();
        close(fd_);
    }
    FakeNotifySocket(const FakeNotifySocket&) = delete;
    FakeNotifySocket& operator=(const FakeNotifySocket&) = delete;

    // sd_notify has queued its datagram when it returns, so nothing here needs to wait.
    std::optional<std::string> receive() const {
        char buffer[4096];
        const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
        if (n < 0) return std::nullopt;
        return std::string(buffer, static_cast<size_t>(n));
    }

private:
    TempDir dir_;
    std::string path_;
    int fd_ = -1;
    std::optional<ScopedEnv> env_;
};

unsigned long long monotonic_usec() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<unsigned long long>(now.tv_sec) * 1000000ULL +
           static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
}

}  // namespace

TEST_CASE("systemd notify: each call sends its exact message") {
    FakeNotifySocket manager;
    const SystemdNotifier notifier;

    notifier.ready();
    CHECK(manager.receive() == "READY=1");
    notifier.stopping();
    CHECK(manager.receive() == "STOPPING=1");
    notifier.status("42 events/s, 7 sockets tracked");
    CHECK(manager.receive() == "STATUS=42 events/s, 7 sockets tracked");
    CHECK_FALSE(manager.receive());
}

TEST_CASE("systemd notify: a status with line breaks stays one assignment") {
    FakeNotifySocket manager;
    SystemdNotifier().status("reload failed:\nline 3\r\n");
    CHECK(manager.receive() == "STATUS=reload failed: line 3  ");
}

TEST_CASE("systemd notify: reloading carries the CLOCK_MONOTONIC time of the reload") {
    FakeNotifySocket manager;
    const unsigned long long before = monotonic_usec();
    SystemdNotifier().reloading();
    const unsigned long long after = monotonic_usec();

    const std::optional<std::string> message = manager.receive();
    REQUIRE(message);
    const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
    REQUIRE(message->rfind(prefix, 0) == 0);
    const std::string digits = message->substr(prefix.size());
    REQUIRE(!digits.empty());
    REQUIRE(digits.find_first_not_of("0123456789") == std::string::npos);
    const unsigned long long stamp = std::stoull(digits);
    CHECK(stamp >= before);
    CHECK(stamp <= after);
}

TEST_CASE("systemd notify: without NOTIFY_SOCKET nothing is sent and nothing fails") {
    FakeNotifySocket manager;
    {
        ScopedEnv no_socket("NOTIFY_SOCKET", nullptr);
        const SystemdNotifier notifier;
        notifier.ready();
        notifier.reloading();
        notifier.status("x");
        notifier.stopping();
    }
    CHECK_FALSE(manager.receive());
}

TEST_CASE("systemd notify: the watchdog is enabled only when systemd set it for this process") {
    const SystemdNotifier notifier;
    const std::string self = std::to_string(getpid());
    {
        ScopedEnv usec("WATCHDOG_USEC", "30000000");
        ScopedEnv pid("WATCHDOG_PID", self.c_str());
        CHECK(notifier.watchdog_enabled());
    }
    {
        ScopedEnv usec("WATCHDOG_USEC", "30000000");
        ScopedEnv pid("WATCHDOG_PID", "1");  // meant for another process
        CHECK_FALSE(notifier.watchdog_enabled());
    }
    {
        ScopedEnv usec("WATCHDOG_USEC", nullptr);
        ScopedEnv pid("WATCHDOG_PID", nullptr);
        CHECK_FALSE(notifier.watchdog_enabled());
    }
}

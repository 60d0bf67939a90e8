// tcpstatesd_churn: a loopback TCP connection-churn load generator for the benchmarks.
//
// Client threads open connections as fast as they can, each one: connect, send a small
// request, read the server's acknowledgement of the same size, close. The server lives in
// this process (epoll threads). The run stops by itself at a connection count or a time
// limit, whichever comes first, and prints one JSON line with the figures.
//
// The state sequence is fixed, so the number of TCP state transitions is known exactly:
//   client: CLOSE->SYN_SENT, SYN_SENT->ESTABLISHED, ESTABLISHED->FIN_WAIT1,
//           FIN_WAIT1->FIN_WAIT2, FIN_WAIT2->CLOSE
//   server: LISTEN->SYN_RECV, SYN_RECV->ESTABLISHED, ESTABLISHED->CLOSE_WAIT,
//           CLOSE_WAIT->LAST_ACK, LAST_ACK->CLOSE
// that is 10 per connection, plus CLOSE->LISTEN and LISTEN->CLOSE per listening socket.
// This holds because the client always closes first and the server closes only after it
// has read the client's FIN (no simultaneous close, no RST: SO_LINGER 0 would turn the
// client's close into an abort and change the sequence).
//
// TIME_WAIT: the client, as the active closer, is the side that enters TIME_WAIT (in a
// separate timewait object; its full socket goes FIN_WAIT2->CLOSE). A TIME_WAIT entry blocks
// its 4-tuple for 60 s, and there are ~28k ephemeral ports per (destination address, port).
// Spreading connections over several listening ports multiplies the 4-tuples available by
// the port count (connect() picks a local port per destination), and loopback traffic may
// reuse a TIME_WAIT tuple after 1 s (net.ipv4.tcp_tw_reuse = 2, the default). With the
// default 16 ports the run sustains ~16 * 28k / 60 s ≈ 7.5k connections/s before any reuse
// is needed, and far more with it; a connect() failing with EADDRNOTAVAIL is counted as a
// failure and reported, never hidden.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/fd.hpp"
#include "loopback_address.hpp"

namespace {

constexpr int kTransitionsPerConnection = 10;
constexpr int kTransitionsPerListener = 2;

constexpr const char* kUsage =
    "Usage: tcpstatesd_churn [-4|-6] [--connections N] [--duration SECONDS]\n"
    "                        [--threads N] [--server-threads N] [--ports N] [--payload BYTES]\n"
    "Loopback connection churn: each connection connects, sends PAYLOAD bytes, reads as many\n"
    "back, and closes (client first). Stops after N connections or SECONDS, whichever comes\n"
    "first, and prints one JSON line. Exit status 1 when any connection failed.\n"
    "\n"
    "  -4, --ipv4             127.0.0.1 (default)\n"
    "  -6, --ipv6             ::1\n"
    "      --connections N    stop after N connections (default 1000000)\n"
    "      --duration S       stop after S seconds (default 10; fractions allowed)\n"
    "      --threads N        client threads (default 2)\n"
    "      --server-threads N server epoll threads (default 1)\n"
    "      --ports N          listening ports, connections spread over them (default 16)\n"
    "      --payload BYTES    request and acknowledgement size (default 16)\n";

struct Options {
    int family = AF_INET;
    uint64_t connections = 1000000;
    double duration_s = 10;
    unsigned client_threads = 2;
    unsigned server_threads = 1;
    unsigned ports = 16;
    size_t payload = 16;
};

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "tcpstatesd_churn: %s\n", what.c_str());
    std::exit(2);
}

[[noreturn]] void die_errno(const std::string& what) {
    die(what + ": " + std::strerror(errno));
}

uint64_t parse_count(const char* text, const char* option, uint64_t min) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || end == text || *end || v < min)
        die(std::string(option) + " wants an integer >= " + std::to_string(min) + ", not '" + text +
            "'");
    return v;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) die(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "-4" || arg == "--ipv4")
            o.family = AF_INET;
        else if (arg == "-6" || arg == "--ipv6")
            o.family = AF_INET6;
        else if (arg == "--connections")
            o.connections = parse_count(value(), "--connections", 1);
        else if (arg == "--threads")
            o.client_threads = parse_count(value(), "--threads", 1);
        else if (arg == "--server-threads")
            o.server_threads = parse_count(value(), "--server-threads", 1);
        else if (arg == "--ports")
            o.ports = parse_count(value(), "--ports", 1);
        else if (arg == "--payload")
            o.payload = parse_count(value(), "--payload", 1);
        else if (arg == "--duration") {
            const char* text = value();
            char* end = nullptr;
            o.duration_s = std::strtod(text, &end);
            if (end == text || *end || !(o.duration_s > 0))
                die("--duration wants a positive number of seconds, not '" + std::string(text) +
                    "'");
        } else if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else {
            std::fprintf(stderr, "tcpstatesd_churn: unknown argument '%s'\n%s", arg.c_str(),
                         kUsage);
            std::exit(2);
        }
    }
    if (o.server_threads > o.ports) die("--server-threads must not exceed --ports");
    return o;
}

using tcpstatesd::Fd;
using Address = tcpstatesd::test::LoopbackAddress;

Fd listen_on_any_port(int family, uint16_t& port) {
    Fd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) die_errno("socket");
    Address a(family, 0);
    if (bind(fd.get(), a.get(), a.length) != 0) die_errno("bind to a loopback port");
    if (listen(fd.get(), SOMAXCONN) != 0) die_errno("listen");
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a.storage), &a.length) != 0)
        die_errno("getsockname");
    port = ntohs(a.storage.ss_family == AF_INET
                     ? reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port
                     : reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port);
    return fd;
}

// Counters shared by all threads; relaxed: they are only read after the threads have joined
// or as a monotonic progress figure.
struct Totals {
    std::atomic<uint64_t> tickets{0};
    std::atomic<uint64_t> completed{0};  // full client cycles
    std::atomic<uint64_t> connected{0};  // client connect() successes, completed or not
    std::atomic<uint64_t> failed{0};
    std::atomic<uint64_t> server_closed{0};
    std::atomic<uint64_t> server_errors{0};
    std::mutex first_error_mutex;
    std::string first_error;

    void fail(const std::string& what) {
        failed.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(first_error_mutex);
        if (first_error.empty()) first_error = what + ": " + std::strerror(errno);
    }
};

// One epoll loop owning some listeners and the connections accepted from them. A connection
// gets its acknowledgement once the whole request has arrived and is closed at end of file.
class Server {
public:
    Server(std::vector<Fd> listeners, size_t payload, Totals& totals)
        : listeners_(std::move(listeners)),
          payload_(payload),
          totals_(totals),
          epoll_(epoll_create1(EPOLL_CLOEXEC)),
          stop_(eventfd(0, EFD_CLOEXEC)) {
        if (epoll_.get() < 0) die_errno("epoll_create1");
        if (stop_.get() < 0) die_errno("eventfd");
        watch(stop_.get());
        for (const Fd& l : listeners_) watch(l.get());
    }

    void run() {
        std::vector<char> buffer(payload_ + 4096);
        epoll_event events[256];
        for (;;) {
            int n = epoll_wait(epoll_.get(), events, 256, -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                die_errno("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                const int fd = events[i].data.fd;
                if (fd == stop_.get()) return;
                if (is_listener(fd))
                    accept_all(fd);
                else
                    serve(fd, buffer);
            }
        }
    }

    void stop() {
        const uint64_t one = 1;
        if (write(stop_.get(), &one, sizeof one) != sizeof one) die_errno("eventfd write");
    }

private:
    void watch(int fd) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) die_errno("epoll_ctl");
    }

    bool is_listener(int fd) const {
        for (const Fd& l : listeners_)
            if (l.get() == fd) return true;
        return false;
    }

    void accept_all(int listener) {
        for (;;) {
            int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                    die_errno("accept4");
                if (errno == EAGAIN) return;
                continue;
            }
            if (static_cast<size_t>(fd) >= received_.size()) received_.resize(fd * 2 + 64, 0);
            received_[fd] = 0;
            watch(fd);
        }
    }

    void serve(int fd, std::vector<char>& buffer) {
        ssize_t r = read(fd, buffer.data(), buffer.size());
        if (r > 0) {
            const size_t before = received_[fd];
            received_[fd] += r;
            if (before < payload_ && received_[fd] >= payload_) acknowledge(fd, buffer);
            return;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r < 0) totals_.server_errors.fetch_add(1, std::memory_order_relaxed);
        // End of file (or error): closing removes the fd from the epoll set.
        ::close(fd);
        totals_.server_closed.fetch_add(1, std::memory_order_relaxed);
    }

    void acknowledge(int fd, const std::vector<char>& buffer) {
        // A fresh socket's send buffer always has room for a small acknowledgement.
        ssize_t w = write(fd, buffer.data(), payload_);
        if (w != static_cast<ssize_t>(payload_))
            totals_.server_errors.fetch_add(1, std::memory_order_relaxed);
    }

    std::vector<Fd> listeners_;
    size_t payload_;
    Totals& totals_;
    Fd epoll_;
    Fd stop_;
    std::vector<uint32_t> received_;  // request bytes received, indexed by fd
};

bool write_all(int fd, const char* data, size_t size) {
    while (size > 0) {
        ssize_t w = write(fd, data, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        data += w;
        size -= w;
    }
    return true;
}

bool read_exactly(int fd, char* data, size_t size) {
    while (size > 0) {
        ssize_t r = read(fd, data, size);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = ECONNRESET;  // server closed early: report it as such
            return false;
        }
        data += r;
        size -= r;
    }
    return true;
}

void client_loop(const Options& o, const std::vector<Address>& targets, Totals& totals,
                 std::chrono::steady_clock::time_point deadline) {
    std::vector<char> request(o.payload, 'x'), reply(o.payload);
    for (;;) {
        const uint64_t ticket = totals.tickets.fetch_add(1, std::memory_order_relaxed);
        if (ticket >= o.connections || std::chrono::steady_clock::now() >= deadline) return;
        const Address& target = targets[ticket % targets.size()];
        Fd fd(socket(o.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (fd.get() < 0) {
            totals.fail("socket");
            continue;
        }
        if (connect(fd.get(), target.get(), target.length) != 0) {
            totals.fail("connect");
            continue;
        }
        totals.connected.fetch_add(1, std::memory_order_relaxed);
        if (!write_all(fd.get(), request.data(), request.size())) {
            totals.fail("write");
            continue;
        }
        if (!read_exactly(fd.get(), reply.data(), reply.size())) {
            totals.fail("read");
            continue;
        }
        fd.reset();
        totals.completed.fetch_add(1, std::memory_order_relaxed);
        // Too many failures means a broken environment, not a slow one: stop early.
        if (totals.failed.load(std::memory_order_relaxed) > 1000) return;
    }
}

// CPU time of the whole process (all threads). With loopback traffic the kernel's receive
// path, tracepoints and BPF programs included, mostly runs in the sending thread's context, so
// this is what the traffic itself pays, far less disturbed by other load than throughput is.
double process_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_options(argc, argv);
    Totals totals;

    std::vector<uint16_t> ports(o.ports);
    std::vector<std::vector<Fd>> listeners(o.server_threads);
    std::vector<Address> targets;
    for (unsigned i = 0; i < o.ports; ++i) {
        listeners[i % o.server_threads].push_back(listen_on_any_port(o.family, ports[i]));
        targets.emplace_back(o.family, ports[i]);
    }

    std::vector<std::unique_ptr<Server>> servers;
    std::vector<std::thread> server_threads;
    for (auto& set : listeners)
        servers.push_back(std::make_unique<Server>(std::move(set), o.payload, totals));
    for (auto& s : servers) server_threads.emplace_back([&s] { s->run(); });

    const double cpu_start = process_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(o.duration_s));
    std::vector<std::thread> clients;
    for (unsigned i = 0; i < o.client_threads; ++i)
        clients.emplace_back([&] { client_loop(o, targets, totals, deadline); });
    for (auto& t : clients) t.join();
    const auto end = std::chrono::steady_clock::now();
    const double cpu_seconds = process_cpu_seconds() - cpu_start;

    // Every connection the clients opened must also be closed by the server before the
    // figures mean anything: wait for it, boundedly (a lost FIN would be a kernel matter).
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (totals.server_closed.load() < totals.connected.load() &&
           std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (auto& s : servers) s->stop();
    for (auto& t : server_threads) t.join();
    servers.clear();  // closes the listeners: their LISTEN->CLOSE transitions happen here

    const double seconds = std::chrono::duration<double>(end - start).count();
    const uint64_t completed = totals.completed.load();
    const bool clean = totals.failed.load() == 0 && totals.server_errors.load() == 0 &&
                       totals.server_closed.load() == totals.connected.load();
    std::string port_list;
    for (uint16_t p : ports) port_list += (port_list.empty() ? "" : ",") + std::to_string(p);
    // Only complete cycles have a known transition count; say so when some did not complete.
    std::printf(
        "{\"family\":\"%s\",\"client_threads\":%u,\"server_threads\":%u,\"payload\":%zu,"
        "\"ports\":[%s],\"connections\":%llu,\"failed\":%llu,\"server_closed\":%llu,"
        "\"server_errors\":%llu,\"seconds\":%.6f,\"connections_per_second\":%.1f,"
        "\"cpu_seconds\":%.6f,\"cpu_us_per_connection\":%.3f,"
        "\"transitions_per_connection\":%d,\"listener_transitions\":%u,"
        "\"transitions_expected\":%llu,\"clean\":%s,\"first_error\":\"%s\"}\n",
        o.family == AF_INET ? "ipv4" : "ipv6", o.client_threads, o.server_threads, o.payload,
        port_list.c_str(), static_cast<unsigned long long>(completed),
        static_cast<unsigned long long>(totals.failed.load()),
        static_cast<unsigned long long>(totals.server_closed.load()),
        static_cast<unsigned long long>(totals.server_errors.load()), seconds,
        seconds > 0 ? completed / seconds : 0.0, cpu_seconds,
        completed > 0 ? 1e6 * cpu_seconds / completed : 0.0, kTransitionsPerConnection,
        o.ports * kTransitionsPerListener,
        static_cast<unsigned long long>(completed * kTransitionsPerConnection +
                                        o.ports * kTransitionsPerListener),
        clean ? "true" : "false", totals.first_error.c_str());
    std::fflush(stdout);
    return clean ? 0 : 1;
}

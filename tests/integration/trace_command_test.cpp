// `tcpstatesd trace` end to end: the real binary (TCPSTATESD_BINARY, from CMake), started
// as a child process, watching a connection the test makes, stopped with SIGINT.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <system_error>
#include <thread>

#include "event_collector.hpp"
#include "kernel_facts.hpp"
#include "loopback.hpp"
#include "require_bpf.hpp"

using namespace tcpstatesd::test;
using Strings = std::vector<std::string>;

extern char** environ;

namespace {

// For what a started trace shows or does: a line for a transition the test made, an exit.
constexpr std::chrono::milliseconds kTimeout{10000};
// For the start: loading, verifying and attaching the programs took 1.1 to 1.6 s in the rt-amd64
// guest of the kernel matrix on a quiet host, beside a busy loop in the guest or not; in that
// guest at nice 19 beside the parallel suite, a trace once printed no line within 10 s of its
// launch. 60 s, some 40 times the quiet start and far inside the guest's time limit, only
// turns a trace that never starts into a failure that says so.
constexpr std::chrono::milliseconds kStartTimeout{60000};

// One run of the binary with stdout and stderr captured. Killed if still running at the end.
class TraceProcess {
public:
    explicit TraceProcess(const Strings& args) {
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::generic_category(), "pipe2");
        out_ = Fd(out[0]);
        err_ = Fd(err[0]);
        Fd out_write(out[1]), err_write(err[1]);

        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out_write.get(), STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err_write.get(), STDERR_FILENO);
        std::vector<std::string> argv_strings{TCPSTATESD_BINARY};
        argv_strings.insert(argv_strings.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_strings) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc =
            posix_spawn(&pid_, TCPSTATESD_BINARY, &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::system_error(rc, std::generic_category(),
                                    std::string("spawning ") + TCPSTATESD_BINARY);
    }

    ~TraceProcess() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    TraceProcess(const TraceProcess&) = delete;
    TraceProcess& operator=(const TraceProcess&) = delete;

    // Reads stdout until done(all of it so far) holds, the output ends, or the timeout passes.
    bool read_until(const std::function<bool(const std::string&)>& done,
                    std::chrono::milliseconds timeout = kTimeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done(out_text_)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !read_some(out_, out_text_, static_cast<int>(left.count())))
                return done(out_text_);
        }
        return true;
    }

    // Text output only: its header is printed once the programs are attached.
    bool read_header() {
        return read_until([](const std::string& out) { return out.find('\n') != out.npos; },
                          kStartTimeout);
    }

    void interrupt() const { kill(pid_, SIGINT); }

    // The exit code (128 + signal when killed by one); kills the process on timeout. Reads
    // stdout meanwhile: a trace that drains more than a pipe holds could not exit otherwise.
    int wait(std::chrono::milliseconds timeout = kTimeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        int status = 0;
        while (waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
                pid_ = -1;
                FAIL("tcpstatesd did not exit within " << timeout.count() << " ms; killed");
            }
            if (!read_some(out_, out_text_, 10))
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
        // The write ends are closed now: read what is left.
        while (read_some(out_, out_text_, 1000)) {
        }
        while (read_some(err_, err_text_, 1000)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    const std::string& out() const { return out_text_; }
    const std::string& err() const { return err_text_; }

private:
    // One read when data comes within `timeout_ms`; false at end of output or on timeout.
    static bool read_some(const Fd& fd, std::string& into, int timeout_ms) {
        pollfd pfd{fd.get(), POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0) return false;
        char buffer[4096];
        const ssize_t n = read(fd.get(), buffer, sizeof buffer);
        if (n <= 0) return false;
        into.append(buffer, static_cast<size_t>(n));
        return true;
    }

    pid_t pid_ = -1;
    Fd out_, err_;
    std::string out_text_, err_text_;
};

Strings lines_of(const std::string& text) {
    Strings lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

Strings words_of(const std::string& line) {
    Strings words;
    std::istringstream in(line);
    for (std::string word; in >> word;) words.push_back(word);
    return words;
}

bool is_duration(const std::string& ms) {
    char* end = nullptr;
    const double value = std::strtod(ms.c_str(), &end);
    return !ms.empty() && *end == '\0' && value >= 0;
}

// JSON output has no header to say the program is attached: connects to `probe`, a listener
// the trace's port filter lets through, until a line for its port shows up.
bool wait_until_attached(TraceProcess& trace, const Fd& probe) {
    const std::string probe_lport = "\"lport\":" + std::to_string(local_port(probe)) + ",";
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
        run_connection(AF_INET, probe);
        if (trace.read_until(
                [&](const std::string& out) { return out.find(probe_lport) != out.npos; },
                std::chrono::milliseconds(200)))
            return true;
    }
    return false;
}

// The value of a field of a trace JSON line as written (a string without its quotes), or
// nothing when the line has no such field. Enough for trace's flat objects: no value the tests
// look up contains quotes or commas.
std::optional<std::string> json_field(const std::string& line, const std::string& name) {
    const std::string key = "\"" + name + "\":";
    const size_t at = line.find(key);
    if (at == line.npos) return std::nullopt;
    size_t begin = at + key.size();
    size_t end = line.find_first_of(",}", begin);
    if (line[begin] == '"') end = line.find('"', ++begin);
    return line.substr(begin, end - begin);
}

// What a JSON line of `trace --resets` says, in a few words: its event and state(s), the
// close reason if any, the owner (this process or none) and the socket (one or none).
std::string describe_json(const std::string& line) {
    const auto field = [&](const char* name) { return json_field(line, name).value_or("?"); };
    std::string what = field("event") == "transition"
                           ? field("old_state") + " -> " + field("new_state")
                           : field("event") + " in " + field("state");
    if (const auto reason = json_field(line, "reason")) what += ", reason " + *reason;
    const std::string pid = field("pid");
    what += pid == std::to_string(getpid()) ? ", this process" : ", owner " + pid;
    what += field("skaddr") == "null" ? ", no socket" : ", a socket";
    return what;
}

}  // namespace

TEST_CASE("tcpstatesd trace prints a connection's transitions on its port", "[trace]") {
    REQUIRE_BPF();
    Fd listener = bind_loopback(AF_INET);
    const std::string port = std::to_string(local_port(listener));
    TraceProcess trace({"trace", "-L", port});
    REQUIRE(trace.read_header());
    const std::string header = lines_of(trace.out()).front();
    CHECK(words_of(header) == Strings{"SKADDR", "PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT",
                                      "OLDSTATE", "->", "NEWSTATE", "MS"});

    start_listening(listener);
    const std::string client_port = std::to_string(run_connection(AF_INET, listener));
    listener.reset();
    // Header, 2 listener lines, 5 accepted-socket lines.
    REQUIRE(trace.read_until([](const std::string& out) { return lines_of(out).size() >= 8; }));
    trace.interrupt();
    CHECK(trace.wait() == 0);
    INFO("stdout:\n" << trace.out() << "stderr:\n" << trace.err());

    const Strings lines = lines_of(trace.out());
    REQUIRE(lines.size() == 8);
    CHECK(lines[0] == header);
    // Per line: LADDR LPORT RADDR RPORT OLDSTATE -> NEWSTATE, and whether MS is known.
    const std::string child_peer =
        child_has_peer_on_syn_recv() ? "127.0.0.1 " + client_port : "0.0.0.0 0";
    const Strings expected{
        "127.0.0.1 " + port + " 0.0.0.0 0 CLOSE -> LISTEN -",
        "127.0.0.1 " + port + " " + child_peer + " LISTEN -> SYN_RECV -",
        "127.0.0.1 " + port + " 127.0.0.1 " + client_port + " SYN_RECV -> ESTABLISHED ms",
        "127.0.0.1 " + port + " 127.0.0.1 " + client_port + " ESTABLISHED -> CLOSE_WAIT ms",
        "127.0.0.1 " + port + " 127.0.0.1 " + client_port + " CLOSE_WAIT -> LAST_ACK ms",
        "127.0.0.1 " + port + " 127.0.0.1 " + client_port + " LAST_ACK -> CLOSE ms",
        "127.0.0.1 " + port + " 0.0.0.0 0 LISTEN -> CLOSE ms",
    };
    Strings seen;
    for (size_t i = 1; i < lines.size(); ++i) {
        const Strings w = words_of(lines[i]);
        REQUIRE(w.size() == 11);
        const std::string ms = w[10] == "-" ? "-" : is_duration(w[10]) ? "ms" : w[10];
        seen.push_back(w[3] + " " + w[4] + " " + w[5] + " " + w[6] + " " + w[7] + " " + w[8] + " " +
                       w[9] + " " + ms);
    }
    CHECK(seen == expected);
    // The listener is this process's, and so is its child, though the child's transitions ran
    // in softirq: every line names this process as the owner.
    for (size_t i = 1; i < lines.size(); ++i) {
        INFO(lines[i]);
        CHECK(words_of(lines[i])[1] == std::to_string(getpid()));
        CHECK(words_of(lines[i])[2] == current_comm().substr(0, 10));
    }
}

TEST_CASE("tcpstatesd trace --json prints one object per transition", "[trace]") {
    REQUIRE_BPF();
    Fd probe = listen_on_loopback(AF_INET);
    Fd listener = bind_loopback(AF_INET);
    const std::string probe_port = std::to_string(local_port(probe));
    const std::string port = std::to_string(local_port(listener));
    TraceProcess trace({"trace", "--json", "-L", probe_port + "," + port});
    REQUIRE(wait_until_attached(trace, probe));

    start_listening(listener);
    const std::string client_port = std::to_string(run_connection(AF_INET, listener));
    listener.reset();
    const std::string listener_closed =
        "\"lport\":" + port +
        ",\"raddr\":\"0.0.0.0\",\"rport\":0,\"old_state\":\"LISTEN\","
        "\"new_state\":\"CLOSE\"";
    REQUIRE(trace.read_until(
        [&](const std::string& out) { return out.find(listener_closed) != out.npos; }));
    trace.interrupt();
    CHECK(trace.wait() == 0);
    INFO("stdout:\n" << trace.out() << "stderr:\n" << trace.err());

    const std::regex object(
        R"re(^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z","skaddr":"[0-9a-f]+","pid":(\d+|null),)re"
        R"re("comm":(?:"[^"]*"|null),"family":"ipv4","laddr":"127\.0\.0\.1","lport":(\d+),)re"
        R"re("raddr":"([0-9.]+)","rport":(\d+),"old_state":"([A-Z_0-9]+)",)re"
        R"re("new_state":"([A-Z_0-9]+)",(?:"reason":"([a-z]+)",)?"duration_ms":(null|\d+\.\d{6})\}$)re");
    Strings seen;
    for (const auto& line : lines_of(trace.out())) {
        std::smatch m;
        REQUIRE(std::regex_match(line, m, object));
        if (m[2] != port) continue;  // the probe's connections, opened before the trace: no owner
        CHECK(m[1] == std::to_string(getpid()));
        seen.push_back(m[3].str() + " " + m[4].str() + " " + m[5].str() + "->" + m[6].str() + " " +
                       (m[7].matched ? m[7].str() + " " : "") + (m[8] == "null" ? "null" : "ms"));
    }
    const std::string child_peer =
        child_has_peer_on_syn_recv() ? "127.0.0.1 " + client_port : "0.0.0.0 0";
    CHECK(seen == Strings{
                      "0.0.0.0 0 CLOSE->LISTEN null",
                      child_peer + " LISTEN->SYN_RECV null",
                      "127.0.0.1 " + client_port + " SYN_RECV->ESTABLISHED ms",
                      "127.0.0.1 " + client_port + " ESTABLISHED->CLOSE_WAIT ms",
                      "127.0.0.1 " + client_port + " CLOSE_WAIT->LAST_ACK ms",
                      "127.0.0.1 " + client_port + " LAST_ACK->CLOSE normal ms",
                      "0.0.0.0 0 LISTEN->CLOSE normal ms",
                  });
}

TEST_CASE("tcpstatesd trace started while connections churn loses none of their transitions",
          "[trace]") {
    REQUIRE_BPF();
    // The trace attaches its two transition programs one after the other while the churn's
    // transitions run them (the nested one first: bpf/tcpstates.bpf.c). A transition lost then
    // or later shows as a socket whose next line does not go on from its last one. Five starts:
    // when the programs still handed transitions over among themselves, and before they waited
    // for all three to be attached, 5 of 8 starts under three churning processes showed one.
    // The churn goes on for 200 connections after the first line: 1,000 lines, which the
    // trace's ring buffer holds even if the trace reads none of them meanwhile.
    constexpr int kAfterFirstLine = 200;
    for (int start = 0; start < 5; ++start) {
        Fd listener = listen_on_loopback(AF_INET);
        const std::string port = std::to_string(local_port(listener));
        std::atomic<bool> seen{false};
        std::exception_ptr churn_failed;
        std::thread churn([&] {
            try {
                for (int after = 0; after < kAfterFirstLine; after += seen ? 1 : 0)
                    run_connection(AF_INET, listener);
            } catch (...) {
                churn_failed = std::current_exception();
            }
        });
        TraceProcess trace({"trace", "-L", port});
        // Text output: its header says when the programs are attached, so that a slow start
        // is told apart from a trace that prints no transition.
        const bool started = trace.read_header();
        const bool printed = started && trace.read_until([](const std::string& out) {
            return lines_of(out).size() >= 2;
        });
        seen = true;
        churn.join();
        trace.interrupt();
        CHECK(trace.wait() == 0);
        INFO("start " << start << ", stdout:\n"
                      << trace.out().substr(0, 1000) << "\nstderr:\n"
                      << trace.err());
        // First: a trace that never started left the churn running until the limit.
        REQUIRE(started);
        if (churn_failed) std::rethrow_exception(churn_failed);
        REQUIRE(printed);

        std::map<std::string, std::string> state_of;  // by socket address: its last new state
        size_t gaps = 0;
        std::string first_gap;
        const Strings lines = lines_of(trace.out());
        for (size_t i = 1; i < lines.size(); ++i) {
            // SKADDR first, then OLDSTATE -> NEWSTATE MS last: read from the ends, as the
            // owner's command name between them may hold spaces.
            const Strings w = words_of(lines[i]);
            REQUIRE(w.size() >= 11);
            const std::string& sk = w.front();
            const std::string& old_state = w[w.size() - 4];
            const auto last = state_of.find(sk);
            // CLOSE ends a life: the address may begin another one (LISTEN -> SYN_RECV).
            if (last != state_of.end() && last->second != "CLOSE" && last->second != old_state) {
                if (gaps++ == 0) first_gap = "after " + last->second + ": " + lines[i];
            }
            state_of[sk] = w[w.size() - 2];
        }
        INFO("the first line that does not go on from its socket's last one, " << first_gap);
        CHECK(gaps == 0);
    }
}

TEST_CASE("tcpstatesd trace --resets --reason --json shows a refused connect's resets and reason",
          "[trace]") {
    REQUIRE_BPF();
    Fd probe = listen_on_loopback(AF_INET);
    // Bound but not listening: the client's SYN finds no socket, and the kernel answers it
    // with a RST of no socket's, whose local port is the SYN's destination.
    Fd closed = bind_loopback(AF_INET);
    Fd client = bind_loopback(AF_INET);
    const uint16_t closed_port = local_port(closed);
    const uint16_t client_port = local_port(client);
    TraceProcess trace({"trace", "--resets", "--reason", "--json", "-L",
                        std::to_string(local_port(probe)) + "," + std::to_string(closed_port) +
                            "," + std::to_string(client_port)});
    REQUIRE(wait_until_attached(trace, probe));

    REQUIRE(try_connect(client, AF_INET, closed_port) == ECONNREFUSED);
    const std::string client_closed =
        "\"lport\":" + std::to_string(client_port) +
        ",\"raddr\":\"127.0.0.1\",\"rport\":" + std::to_string(closed_port) +
        ",\"event\":\"transition\",\"old_state\":\"SYN_SENT\"";
    REQUIRE(trace.read_until(
        [&](const std::string& out) { return out.find(client_closed) != out.npos; }));
    trace.interrupt();
    CHECK(trace.wait() == 0);
    INFO("stdout:\n" << trace.out() << "stderr:\n" << trace.err());

    // The client's lines (its local port) and the RST sent to it (the closed port's), in the
    // order they happen: the SYN, the RST sent for it, the RST received, the move to CLOSE.
    Strings seen;
    for (const auto& line : lines_of(trace.out())) {
        const auto lport = json_field(line, "lport");
        const auto rport = json_field(line, "rport");
        const std::string from_client = std::to_string(client_port);
        const std::string to_closed = std::to_string(closed_port);
        if (lport == from_client && rport == to_closed)
            seen.push_back("client: " + describe_json(line));
        if (lport == to_closed && rport == from_client)
            seen.push_back("closed: " + describe_json(line));
    }
    Strings expected{
        "client: CLOSE -> SYN_SENT, this process, a socket",
        // Kernels that trace it (>= 6.10) pass its reason too.
        "closed: reset_sent in CLOSE, reason no_socket, owner null, no socket",
        "client: reset_received in SYN_SENT, this process, a socket",
        "client: SYN_SENT -> CLOSE, reason refused, this process, a socket",
    };
    if (!traces_socketless_resets()) expected.erase(expected.begin() + 1);
    CHECK(seen == expected);
}

TEST_CASE("tcpstatesd trace --retransmits --reason shows a dropped SYN sent again, then canceled",
          "[trace]") {
    REQUIRE_BPF();
    // A listener whose accept queue is full (backlog 1 holds two connections nobody accepts)
    // drops every further SYN: the client sends it again after its initial timeout, 1 s.
    Fd listener = bind_loopback(AF_INET);
    if (listen(listener.get(), 1) != 0) FAIL("listen: " << std::strerror(errno));
    const uint16_t port = local_port(listener);
    Fd queued[] = {connect_loopback(AF_INET, port), connect_loopback(AF_INET, port)};
    Fd client = bind_loopback(AF_INET);
    const std::string client_port = std::to_string(local_port(client));
    TraceProcess trace({"trace", "--retransmits", "--reason", "-L", client_port});
    REQUIRE(trace.read_header());
    CHECK(words_of(lines_of(trace.out()).front()) == Strings{"SKADDR", "PID", "COMM", "LADDR",
                                                             "LPORT", "RADDR", "RPORT", "OLDSTATE",
                                                             "->", "NEWSTATE", "REASON", "MS"});

    fcntl(client.get(), F_SETFL, O_NONBLOCK);
    REQUIRE(try_connect(client, AF_INET, port) == EINPROGRESS);
    REQUIRE(
        trace.read_until([](const std::string& out) { return out.find(" RETRANS ") != out.npos; }));
    // Closed by the application before the handshake completed: canceled.
    client.reset();
    REQUIRE(trace.read_until(
        [](const std::string& out) { return out.find(" SYN_SENT    -> CLOSE ") != out.npos; }));
    trace.interrupt();
    CHECK(trace.wait() == 0);
    INFO("stdout:\n" << trace.out() << "stderr:\n" << trace.err());

    // Per line: OLDSTATE -> NEWSTATE (or RETRANS in STATE), REASON, whether MS is known.
    Strings seen;
    const Strings lines = lines_of(trace.out());
    for (size_t i = 1; i < lines.size(); ++i) {
        const Strings w = words_of(lines[i]);
        REQUIRE(w.size() == 12);
        CHECK(w[1] == std::to_string(getpid()));
        const std::string ms = w[11] == "-" ? "-" : is_duration(w[11]) ? "ms" : w[11];
        const std::string line = w[7] + " " + w[8] + " " + w[9] + " " + w[10] + " " + ms;
        // The SYN may go out more than twice if the trace is slow to show the first.
        if (seen.empty() || seen.back() != line) seen.push_back(line);
    }
    CHECK(seen == Strings{
                      "CLOSE -> SYN_SENT - -",
                      "RETRANS in SYN_SENT - -",
                      "SYN_SENT -> CLOSE canceled ms",
                  });
}

TEST_CASE("tcpstatesd trace rejects bad arguments with exit code 2 and a message", "[trace]") {
    // No BPF needed: arguments are checked before anything is loaded.
    const auto [args, message] = GENERATE(table<Strings, std::string>({
        {{"trace", "--no-such-option"},
         "tcpstatesd trace: unknown option --no-such-option (see tcpstatesd trace --help)"},
        {{"trace", "-L", "70000"}, "tcpstatesd trace: --localport: invalid port '70000'"},
        {{"trace", "-D", "http"}, "tcpstatesd trace: --remoteport: "},
        {{"trace", "--transport", "pigeon"}, "unknown transport 'pigeon'"},
        {{"trace", "unexpected"}, "tcpstatesd trace: unexpected argument unexpected"},
        {{"trace", "--resets", "--btf.path", "/x"}, "need the kernel's own BTF"},
        {{"trace", "--retransmits", "--btf.path", "/x"}, "need the kernel's own BTF"},
    }));
    TraceProcess trace(args);
    const int code = trace.wait();
    INFO("stderr:\n" << trace.err());
    CHECK(code == 2);
    CHECK(trace.err().find(message) != std::string::npos);
    CHECK(trace.out().empty());
}

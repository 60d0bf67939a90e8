#include "event_collector.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

#include "common/read_file.hpp"
#include "kernel/tcp_state.hpp"
#include "labels/cgroup_names.hpp"
#include "trace/trace_format.hpp"

namespace tcpstatesd::test {

const std::vector<std::string> kClientLife{"CLOSE->SYN_SENT", "SYN_SENT->ESTABLISHED",
                                           "ESTABLISHED->FIN_WAIT1", "FIN_WAIT1->FIN_WAIT2",
                                           "FIN_WAIT2->CLOSE"};
const std::vector<std::string> kServerLife{"LISTEN->SYN_RECV", "SYN_RECV->ESTABLISHED",
                                           "ESTABLISHED->CLOSE_WAIT", "CLOSE_WAIT->LAST_ACK",
                                           "LAST_ACK->CLOSE"};
const std::vector<std::string> kListenerLife{"CLOSE->LISTEN", "LISTEN->CLOSE"};

bool wait_until(tcpstatesd::EventSource& source, const std::function<bool()>& done,
                std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        source.consume();
        if (done()) return true;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd pfd{source.fd(), POLLIN, 0};
        // Short slices: some conditions (a loss counter read from a map) change without an
        // event to wake the poll.
        if (poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 50))) < 0 &&
            errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "polling the event source");
    }
}

Tracer::Tracer(const tcpstatesd::BpfOptions& options)
    : program(options), source(program, collector) {}

bool Tracer::wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    if (tcpstatesd::test::wait_until(source, done, timeout)) return true;
    UNSCOPED_INFO("waited " << timeout.count() << " ms in vain; "
                            << tcpstatesd::transport_name(program.transport())
                            << " program losses: " << losses());
    return false;
}

std::string Tracer::losses() const {
    const tcpstatesd::EventLosses lost = source.losses();
    std::string text;
    for (size_t i = 0; i < tcpstatesd::kLossReasons; ++i) {
        const auto reason = static_cast<tcpstatesd::LossReason>(i);
        text += (text.empty() ? "" : ", ") + std::string(tcpstatesd::loss_reason_name(reason)) +
                ": " + std::to_string(lost[reason]);
    }
    return text;
}

void Tracer::drain() {
    size_t before = 0;
    do {
        before = collector.events.size();
        source.consume();
    } while (collector.events.size() > before);
}

std::vector<tcpstates_event> chronological(std::vector<tcpstates_event> events) {
    std::stable_sort(events.begin(), events.end(),
                     [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; });
    return events;
}

std::vector<tcpstates_event> life_of(const std::vector<tcpstates_event>& received,
                                     const EventMatch& identifies) {
    const auto by_time = [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; };
    std::vector<tcpstates_event> sorted;
    if (!std::is_sorted(received.begin(), received.end(), by_time))
        sorted = chronological(received);
    const std::vector<tcpstates_event>& events = sorted.empty() ? received : sorted;
    const auto named = std::find_if(events.begin(), events.end(), identifies);
    if (named == events.end()) return {};
    const uint64_t skaddr = named->skaddr;
    const auto same = [skaddr](const tcpstates_event& e) { return e.skaddr == skaddr; };
    const auto is_close = [](const tcpstates_event& e) {
        return e.transition.kind == TCPSTATES_KIND_TRANSITION &&
               e.transition.new_state == TCPSTATES_CLOSE;
    };

    // Back from the named event to just after the previous CLOSE of the same address.
    auto begin = named;
    for (auto it = named; it != events.begin();) {
        --it;
        if (!same(*it)) continue;
        if (is_close(*it)) break;
        begin = it;
    }
    // A life begins with a transition. A reset before it ended the previous socket at this
    // address: an abort sends its RST after its CLOSE (tcp_disconnect()).
    while (begin != named && (!same(*begin) || begin->transition.kind != TCPSTATES_KIND_TRANSITION))
        ++begin;
    std::vector<tcpstates_event> life;
    for (auto it = begin; it != events.end(); ++it) {
        if (!same(*it)) continue;
        life.push_back(*it);
        if (is_close(*it)) break;
    }
    return life;
}

bool ended(const std::vector<tcpstates_event>& life) {
    return !life.empty() && life.back().transition.kind == TCPSTATES_KIND_TRANSITION &&
           life.back().transition.new_state == TCPSTATES_CLOSE;
}

const tcpstates_event* first_of(const std::vector<tcpstates_event>& events,
                                const EventMatch& match) {
    const auto found = std::find_if(events.begin(), events.end(), match);
    return found == events.end() ? nullptr : &*found;
}

std::vector<tcpstates_event> state_changes(const std::vector<tcpstates_event>& events) {
    std::vector<tcpstates_event> changes;
    for (const auto& e : events)
        if (e.transition.kind == TCPSTATES_KIND_TRANSITION) changes.push_back(e);
    return changes;
}

std::vector<std::string> transitions(const std::vector<tcpstates_event>& events) {
    std::vector<std::string> names;
    for (const auto& e : events) {
        const std::string state(tcpstatesd::tcp_state_name(e.transition.new_state));
        switch (e.transition.kind) {
            case TCPSTATES_KIND_RESET_SENT:
                names.push_back("RST sent in " + state);
                break;
            case TCPSTATES_KIND_RESET_RECEIVED:
                names.push_back("RST received in " + state);
                break;
            case TCPSTATES_KIND_RETRANSMIT:
                names.push_back("retransmit in " + state);
                break;
            default:
                names.push_back(std::string(tcpstatesd::tcp_state_name(e.transition.old_state)) +
                                "->" + state);
        }
    }
    return names;
}

std::string comm_of(const tcpstates_event& event) {
    return std::string(event.owner.comm, strnlen(event.owner.comm, sizeof event.owner.comm));
}

std::string describe(const tcpstates_event& e) {
    char skaddr[24];
    snprintf(skaddr, sizeof skaddr, "%llx", static_cast<unsigned long long>(e.skaddr));
    return std::string(skaddr) + " " + std::string(tcpstatesd::family_name(e.transition.family)) +
           " " + tcpstatesd::format_address(e.transition.family, e.laddr) + ":" +
           std::to_string(e.transition.lport) + " " +
           tcpstatesd::format_address(e.transition.family, e.raddr) + ":" +
           std::to_string(e.transition.rport) + " " +
           std::string(tcpstatesd::tcp_state_name(e.transition.old_state)) + "->" +
           std::string(tcpstatesd::tcp_state_name(e.transition.new_state)) +
           " flags=" + std::to_string(e.transition.flags) + " pid=" + std::to_string(e.owner.pid) +
           " comm=" + comm_of(e);
}

std::string current_comm() {
    char name[17] = {};
    if (prctl(PR_GET_NAME, name) != 0)
        throw std::system_error(errno, std::generic_category(), "prctl(PR_GET_NAME)");
    return name;
}

std::optional<uint64_t> current_cgroup_id() {
    const auto mount =
        tcpstatesd::find_cgroup2_mount(tcpstatesd::read_file("/proc/self/mountinfo", 1 << 20));
    if (!mount) return std::nullopt;
    // The v2 line of /proc/self/cgroup is "0::/path".
    const std::string cgroups = tcpstatesd::read_file("/proc/self/cgroup", 1 << 16);
    const size_t line = cgroups.find("0::");
    if (line == std::string::npos)
        throw std::runtime_error("no cgroup v2 line in /proc/self/cgroup");
    const std::string path = cgroups.substr(line + 3, cgroups.find('\n', line) - line - 3);
    struct stat st {};
    if (stat((*mount + path).c_str(), &st) != 0)
        throw std::system_error(errno, std::generic_category(), "stat " + *mount + path);
    return st.st_ino;
}

uint64_t steady_ns(std::chrono::steady_clock::time_point t) {
    return nanoseconds(t.time_since_epoch());
}

uint64_t nanoseconds(std::chrono::steady_clock::duration d) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

}  // namespace tcpstatesd::test

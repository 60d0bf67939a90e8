#include "metrics/transition_metrics.hpp"

#include <sys/socket.h>

#include <string>
#include <utility>

#include "kernel/tcp_state.hpp"

namespace tcpstatesd {

namespace {

// The transitions every ordinary connection makes (see docs/metrics.md). They are exported
// from the start, at zero, so that rate() and increase() see their first increment.
constexpr std::pair<unsigned, unsigned> kCommonTransitions[] = {
    {TCPSTATES_CLOSE, TCPSTATES_SYN_SENT},
    {TCPSTATES_SYN_SENT, TCPSTATES_ESTABLISHED},
    {TCPSTATES_SYN_SENT, TCPSTATES_CLOSE},  // refused, timed out
    {TCPSTATES_CLOSE, TCPSTATES_LISTEN},
    {TCPSTATES_LISTEN, TCPSTATES_CLOSE},
    {TCPSTATES_LISTEN, TCPSTATES_SYN_RECV},  // a child socket is born
    {TCPSTATES_SYN_RECV, TCPSTATES_ESTABLISHED},
    {TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1},
    {TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_WAIT},
    {TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE},  // reset
    {TCPSTATES_FIN_WAIT1, TCPSTATES_FIN_WAIT2},
    {TCPSTATES_FIN_WAIT2, TCPSTATES_CLOSE},
    {TCPSTATES_CLOSE_WAIT, TCPSTATES_LAST_ACK},
    {TCPSTATES_LAST_ACK, TCPSTATES_CLOSE},
};

// Both old and new state are known only when the transition did not start the socket's
// life in our table: CLOSE -> * (a new socket) and LISTEN -> SYN_RECV (a child cloned from
// its listener) never have a start, so they get no histogram.
bool can_have_duration(unsigned from, unsigned to) {
    return from != TCPSTATES_CLOSE && !(from == TCPSTATES_LISTEN && to == TCPSTATES_SYN_RECV);
}

unsigned family_index(unsigned family) {
    return family == AF_INET6 ? 1 : 0;
}
unsigned family_of_index(unsigned index) {
    return index == 1 ? AF_INET6 : AF_INET;
}
unsigned state_index(unsigned state) {
    return state <= TCPSTATES_MAX_STATE ? state : 0;
}

}  // namespace

TransitionMetrics::TransitionMetrics(prometheus::Registry& registry,
                                     std::vector<double> duration_buckets)
    : transitions_(prometheus::BuildCounter()
                       .Name("tcpstates_transitions_total")
                       .Help("TCP state transitions, by address family, previous state "
                             "(from_state) and new state (to_state).")
                       .Register(registry)),
      unknown_start_(prometheus::BuildCounter()
                         .Name("tcpstatesd_transitions_unknown_start_total")
                         .Help("Transitions whose start was not seen (new socket, child "
                               "socket, socket older than the daemon, or evicted from the "
                               "socket table): counted, never observed as a duration.")
                         .Register(registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("tcpstates_state_duration_seconds")
                     .Help("Time a TCP socket spent in `state` before it moved to "
                           "`next_state`.")
                     .Register(registry)),
      events_received_(prometheus::BuildCounter()
                           .Name("tcpstatesd_events_received_total")
                           .Help("Transition events delivered by the kernel to the daemon.")
                           .Register(registry)
                           .Add({})),
      buckets_(std::move(duration_buckets)) {
    export_common_series();
}

void TransitionMetrics::export_common_series() {
    for (unsigned f = 0; f < kFamilies; ++f)
        for (auto [from, to] : kCommonTransitions) {
            slot(f, from, to);
            if (can_have_duration(from, to)) duration(f, from, to);
        }
}

TransitionMetrics::Slot& TransitionMetrics::slot(unsigned family, unsigned from, unsigned to) {
    Slot& s = slots_[family][from][to];
    if (!s.transitions) {
        const std::string fam(family_name(family_of_index(family)));
        const std::string from_name(tcp_state_name(from));
        const std::string to_name(tcp_state_name(to));
        s.transitions =
            &transitions_.Add({{"family", fam}, {"from_state", from_name}, {"to_state", to_name}});
    }
    return s;
}

prometheus::Histogram& TransitionMetrics::duration(unsigned family, unsigned from, unsigned to) {
    Slot& s = slots_[family][from][to];
    if (!s.duration)
        s.duration = &durations_.Add({{"family", std::string(family_name(family_of_index(family)))},
                                      {"state", std::string(tcp_state_name(from))},
                                      {"next_state", std::string(tcp_state_name(to))}},
                                     buckets_);
    return *s.duration;
}

void TransitionMetrics::on_transition(const tcpstates_transition& transition) {
    events_received_.Increment();
    const unsigned f = family_index(transition.family);
    const unsigned from = state_index(transition.old_state);
    const unsigned to = state_index(transition.new_state);
    Slot& s = slot(f, from, to);
    s.transitions->Increment();
    if (transition.flags & TCPSTATES_EVENT_START_UNKNOWN) {
        if (!s.unknown_start)
            s.unknown_start =
                &unknown_start_.Add({{"family", std::string(family_name(transition.family))},
                                     {"from_state", std::string(tcp_state_name(from))},
                                     {"to_state", std::string(tcp_state_name(to))}});
        s.unknown_start->Increment();
        return;
    }
    duration(f, from, to).Observe(static_cast<double>(transition.duration_ns) * 1e-9);
}

void TransitionMetrics::set_duration_buckets(std::vector<double> buckets) {
    if (buckets == buckets_) return;
    buckets_ = std::move(buckets);
    for (auto& by_from : slots_)
        for (auto& by_to : by_from)
            for (Slot& s : by_to)
                if (s.duration) {
                    durations_.Remove(s.duration);
                    s.duration = nullptr;
                }
    export_common_series();
}

}  // namespace tcpstatesd

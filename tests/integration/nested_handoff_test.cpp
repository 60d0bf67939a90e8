// The hand-off between the first, the nested and the release transition program
// (bpf/transitions.bpf.h): the real programs, run by the kernel on one CPU (BPF_PROG_TEST_RUN) in
// the orders interrupts' transitions make, count each transition once. The raw tracepoint set is
// loaded and not attached, so no transition of the machine runs them between the test's runs.
// Each run is given a socket address no socket has: the programs stop after the hand-off (the
// address is not a TCP socket's), and the nested program's count of the transitions it took over
// says who handled what.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "require_bpf.hpp"
#include "tcpstates.h"
#include "tcpstates.skel.h"

namespace {

constexpr int kCpu = 0;

struct Transition {
    uint64_t sk;
    uint64_t old_state;
    uint64_t new_state;
};

class HandOff {
public:
    HandOff() : skeleton_(tcpstates_bpf__open(), tcpstates_bpf__destroy) {
        REQUIRE(skeleton_);
        const auto& p = skeleton_->progs;
        bpf_program* program = nullptr;
        bpf_object__for_each_program(program, skeleton_->obj) {
            bpf_program__set_autoload(program, program == p.tcpstates_ringbuf_raw ||
                                                   program == p.tcpstates_ringbuf_raw_nested ||
                                                   program == p.tcpstates_ringbuf_raw_release);
        }
        REQUIRE(tcpstates_bpf__load(skeleton_.get()) == 0);
        arm(true);
    }

    // As user space does once all three are attached (false: before, as they are attached).
    void arm(bool armed) { skeleton_->bss->transitions_armed = armed ? 1 : 0; }

    void first(const Transition& t) { run(skeleton_->progs.tcpstates_ringbuf_raw, t); }
    void nested(const Transition& t) { run(skeleton_->progs.tcpstates_ringbuf_raw_nested, t); }
    void release(const Transition& t) { run(skeleton_->progs.tcpstates_ringbuf_raw_release, t); }
    // The three runs of a transition no other one interrupts.
    void uninterrupted(const Transition& t) {
        first(t);
        nested(t);
        release(t);
    }

    // The nested program's count of the transitions it handled, on the test's CPU.
    uint64_t nested_handled() const {
        std::vector<uint64_t> per_cpu(libbpf_num_possible_cpus());
        const uint32_t key = TCPSTATES_COUNTER_NESTED_HANDLED;
        const int counters = bpf_map__fd(skeleton_->maps.counters);
        REQUIRE(bpf_map_lookup_elem(counters, &key, per_cpu.data()) == 0);
        return per_cpu.at(kCpu);
    }

private:
    static void run(bpf_program* program, const Transition& t) {
        uint64_t args[3] = {t.sk, t.old_state, t.new_state};
        LIBBPF_OPTS(bpf_test_run_opts, options, .ctx_in = args, .ctx_size_in = sizeof(args),
                    .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = kCpu);
        REQUIRE(bpf_prog_test_run_opts(bpf_program__fd(program), &options) == 0);
    }

    std::unique_ptr<tcpstates_bpf, void (*)(tcpstates_bpf*)> skeleton_;
};

// Addresses in the kernel's half that no socket has (a probe read of them fails).
constexpr Transition kH{0xffff'ffff'ffff'f000, TCPSTATES_ESTABLISHED, TCPSTATES_FIN_WAIT1};
constexpr Transition kI{0xffff'ffff'ffff'f100, TCPSTATES_FIN_WAIT1, TCPSTATES_FIN_WAIT2};
constexpr Transition kJ{0xffff'ffff'ffff'f200, TCPSTATES_ESTABLISHED, TCPSTATES_CLOSE_WAIT};

}  // namespace

// H is a process context's transition; I and J an interrupt's, each run to its end before H
// goes on. The kernel skips a program for I and J while it runs for H.
TEST_CASE(
    "the nested transition program takes over exactly the transitions the first did not run for",
    "[nested]") {
    REQUIRE_BPF();
    HandOff programs;

    SECTION("a transition all three programs run for is the first's") {
        programs.uninterrupted(kH);
        CHECK(programs.nested_handled() == 0);
    }
    SECTION("interrupt transitions the first was skipped for are the nested one's") {
        programs.first(kH);  // running, interrupted: the kernel skips the first for I and J
        programs.nested(kI);
        programs.release(kI);
        programs.nested(kJ);
        programs.release(kJ);
        programs.nested(kH);
        programs.release(kH);
        CHECK(programs.nested_handled() == 2);
    }
    SECTION("interrupt transitions between the first and the nested run are their own first's") {
        programs.first(kH);
        programs.uninterrupted(kI);
        programs.uninterrupted(kJ);
        programs.nested(kH);
        programs.release(kH);
        CHECK(programs.nested_handled() == 0);
    }
    SECTION("interrupt transitions as the nested run starts, whose nested runs the kernel skips") {
        programs.first(kH);
        programs.first(kI);  // the kernel skips the nested program for I and J: it is running
        programs.release(kI);
        programs.first(kJ);
        programs.release(kJ);
        programs.nested(kH);
        programs.release(kH);
        CHECK(programs.nested_handled() == 0);
    }
    SECTION("interrupt transitions as the release run starts, whose releases the kernel skips") {
        programs.first(kH);
        programs.nested(kH);
        programs.first(kI);
        programs.nested(kI);
        programs.first(kJ);
        programs.nested(kJ);
        programs.release(kH);
        CHECK(programs.nested_handled() == 0);
    }
    SECTION("each of these leaves no transition held: the next ones the first skips are taken") {
        programs.first(kH);
        programs.first(kI);
        programs.release(kI);
        programs.nested(kH);
        programs.first(kJ);  // as the nested run for H ends
        programs.release(kJ);
        programs.release(kH);
        for (const Transition& t : {kH, kI, kJ}) {  // the same transitions again, first skipped
            programs.nested(t);
            programs.release(t);
        }
        CHECK(programs.nested_handled() == 3);
    }
    SECTION("transitions the first ran for before the others were attached are not held") {
        programs.arm(false);
        for (const Transition& t : {kH, kI, kJ}) programs.first(t);
        programs.arm(true);
        // Held, the first two would still be, so that the same transitions later, whose first
        // runs the kernel skips, would be taken for them; and no slot would be left for J.
        for (const Transition& t : {kH, kI, kJ}) {
            programs.nested(t);
            programs.release(t);
        }
        CHECK(programs.nested_handled() == 3);
        programs.uninterrupted(kJ);
        CHECK(programs.nested_handled() == 3);
    }
}

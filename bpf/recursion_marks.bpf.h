/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Whether the kernel skipped a first program for the hit a nested program runs for.
 *
 * The kernel does not run a program that is already running on the CPU (Linux >= 6.1 for raw
 * tracepoints: an interrupt's transition arriving during a run). It marks the program running
 * in its per-CPU recursion mark (struct bpf_prog's `active`), from before the run to after it:
 * __bpf_trace_run() (kernel/trace/bpf_trace.c) skips the run and counts a miss when the mark was
 * already set. A tracepoint's programs run one after the other, each run ending before the next
 * begins, and only interrupts nest (a softirq on top of a task; a raw tracepoint's programs run
 * with preemption off). So, while a nested program runs on a CPU, the first program's mark there
 * is set exactly when an interrupted context below is inside the first program's run, which is
 * exactly when the kernel skipped the first program for this hit (or will: the order the programs
 * run in does not matter). The nested program reads that mark and handles the hit only then:
 * every hit is handled once, by the kernel's own record of what it ran, with no hand-off between
 * the programs. The mark is read as 4 bytes: an int, or where a kernel keeps one byte per context
 * (proposed for arm64), the four together; any byte set means running.
 *
 * User space finds the marks' addresses on each CPU (bpf/recursion_marks.bpf.c) and writes them
 * here before attaching. 0 (not found: no kernel BTF, or a kernel before 5.19): the nested
 * programs handle nothing; before Linux 6.1 the kernel skips no raw tracepoint program, and after
 * it a skipped hit is counted as lost (tcpstatesd_events_lost_total{reason="recursion"}).
 */
#ifndef TCPSTATESD_BPF_RECURSION_MARKS_BPF_H
#define TCPSTATESD_BPF_RECURSION_MARKS_BPF_H

#include "kernel_types.h"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "tcpstates.h"

/* Per CPU and first program (enum tcpstates_first_program): the address of the program's
 * recursion mark on that CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCPSTATES_FIRST_PROGRAMS);
	__type(key, __u32);
	__type(value, __u64);
} recursion_marks SEC(".maps");

/* Whether the kernel skipped (or will skip) the first program for the hit the calling nested
 * program runs for, on this CPU. */
static __always_inline int first_program_skipped(enum tcpstates_first_program first)
{
	__u32 key = first, running = 0;
	__u64 *mark = bpf_map_lookup_elem(&recursion_marks, &key);

	if (!mark || !*mark)
		return 0;
	bpf_probe_read_kernel(&running, sizeof(running), (const void *)*mark);
	return running != 0;
}

#endif

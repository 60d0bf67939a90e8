/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Exemplar candidates: per duration series, the slowest observation of the current second and the
 * connection that made it (docs/metrics.md, "Exemplars").
 *
 * Race-free without a lock (tracing programs cannot take bpf_spin_lock):
 * - One writer per entry. The key holds the CPU, so no other CPU writes it, and only the first
 *   transition program offers candidates: it does not run twice at once on a CPU (the kernel
 *   skips a program already running there: an interrupt's or a preempting task's transition
 *   goes to the nested program). The nested program, which may run in the middle of the first
 *   one's write to the same entry, offers nothing: its observations (rare, counted as
 *   tcpstatesd's nested_handled) are never exemplars. Before Linux 6.1 the first program could
 *   re-enter itself from softirq: an interrupted write could then mix two observations of one
 *   series in one entry.
 * - User space reads a table only once swapped out: the swap returns when no program uses it
 *   any more (map-in-map updates wait for running programs), so its entries are final.
 * A table without room (full, or no memory: update_entry()) drops the candidate, counted
 * (TCPSTATES_COUNTER_EXEMPLAR_TABLE_FULL).
 *
 * Most observations are not the slowest, and looking one up in the table cost about 40 ns a
 * transition. User space shows the slowest over CPUs, so the series' histogram keeps a hint: the
 * slowest candidate any CPU kept in the tables' current generation (user space counts it up
 * after each swap). An observation no slower than the hint of the generation cannot be shown and
 * is not offered. Two CPUs raising the hint at once can leave the lower value: the hint is then
 * low, which costs lookups, never a candidate. A hint is written only after its candidate is in
 * a table; read with the generation before the table, it is at worst a generation behind the
 * table its program writes (the swap in between), and stops counting at the next swap.
 */
#ifndef TCPSTATESD_BPF_EXEMPLARS_BPF_H
#define TCPSTATESD_BPF_EXEMPLARS_BPF_H

#include "maps.bpf.h"

/* What offer_exemplar() needs of the series, in one argument (a global function takes five). */
static __always_inline __u64 exemplar_series(__u16 port, int ipv6, __u8 from, __u8 to,
					     int labelled)
{
	return (__u64)port | (__u64)(ipv6 ? 1 : 0) << 16 | (__u64)from << 24 | (__u64)to << 32 |
	       (__u64)(labelled ? 1 : 0) << 40;
}

/* Keeps the observation (duration_ns, ended at now_ns) of the socket at `sk` (its address) that
 * the first program handles as its series' candidate on this CPU if it is the slowest of the
 * current table. The socket's addresses are read only then. Returns the duration of the
 * candidate this CPU's entry holds, 0 when it holds none. A global function, checked once by the
 * verifier; it takes no pointer to the socket (a global function's arguments are numbers), so it
 * probe-reads the socket. */
__noinline __u64 offer_exemplar(__u64 series, __u64 cgroup_id, __u64 duration_ns, __u64 now_ns,
				__u64 sk)
{
	const struct sock *socket = (const struct sock *)sk;
	int labelled = (series >> 40) & 1, ipv6 = (series >> 16) & 1;
	struct tcpstates_exemplar_key key = {
		.cgroup_id = labelled && duration_label_cgroup ? cgroup_id : 0,
		.port = labelled && duration_label_port ? (__u16)series : 0,
		.ipv6 = ipv6,
		.from = (__u8)(series >> 24),
		.to = (__u8)(series >> 32),
		.labelled = labelled,
		.cpu = (__u16)bpf_get_smp_processor_id(),
	};
	struct tcpstates_exemplar candidate = {
		.duration_ns = duration_ns,
		.at_ns = now_ns,
		.cgroup_id = cgroup_id,
		.ipv6 = ipv6,
	};
	struct tcpstates_exemplar *kept;
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&exemplar_tables, &zero);

	if (!table)
		return 0;
	kept = bpf_map_lookup_elem(table, &key);
	if (kept && kept->duration_ns >= duration_ns)
		return kept->duration_ns;
	if (ipv6) {
		bpf_core_read(candidate.laddr, 16, &socket->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(candidate.raddr, 16, &socket->__sk_common.skc_v6_daddr);
	} else {
		bpf_core_read(candidate.laddr, 4, &socket->__sk_common.skc_rcv_saddr);
		bpf_core_read(candidate.raddr, 4, &socket->__sk_common.skc_daddr);
	}
	/* At CLOSE the local port may be unhashed already: the bound one (local_port()). */
	if (key.to == TCPSTATES_CLOSE)
		candidate.lport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)socket, inet_sport));
	else
		candidate.lport = BPF_CORE_READ(socket, __sk_common.skc_num);
	candidate.rport = bpf_ntohs(BPF_CORE_READ(socket, __sk_common.skc_dport));
	if (kept)
		__builtin_memcpy(kept, &candidate, sizeof(candidate));
	else if (update_entry(table, &key, &candidate, BPF_NOEXIST) != 0) {
		count(TCPSTATES_COUNTER_EXEMPLAR_TABLE_FULL);
		return 0;
	}
	return duration_ns;
}

/* The hint: the generation's low 16 bits above the duration's 48 (78 hours; a longer one is
 * saturated, and a saturated hint lets every observation through). */
#define EXEMPLAR_HINT_DURATION ((1ULL << 48) - 1)

static __always_inline __u64 exemplar_hint(__u32 generation, __u64 duration_ns)
{
	if (duration_ns > EXEMPLAR_HINT_DURATION)
		duration_ns = EXEMPLAR_HINT_DURATION;
	return (__u64)(generation & 0xffff) << 48 | duration_ns;
}

/* Offers an observation of the series `histogram` counts it in, if it may be the slowest shown
 * (above); offer_exemplar()'s arguments, but the socket: the first argument of the tracepoint
 * whose context is `ctx`. */
static __always_inline void offer_if_slowest(struct tcpstates_histogram *histogram, __u64 series,
					     __u64 cgroup_id, __u64 duration_ns, __u64 now_ns,
					     const void *ctx)
{
	/* Read before offer_exemplar() reads the table. */
	__u32 generation = exemplar_generation;
	__u64 hint = *(volatile __u64 *)&histogram->exemplar_hint;
	__u64 hinted = hint & EXEMPLAR_HINT_DURATION;
	__u64 held, sk = 0;

	if (hint >> 48 == (generation & 0xffff) && hinted != EXEMPLAR_HINT_DURATION &&
	    duration_ns <= hinted)
		return;
	/* Read as a number, which is what a global function takes: a tp_btf program holds the
	 * socket as a pointer. */
	bpf_probe_read_kernel(&sk, sizeof(sk), ctx);
	held = offer_exemplar(series, cgroup_id, duration_ns, now_ns, sk);
	if (held)
		*(volatile __u64 *)&histogram->exemplar_hint = exemplar_hint(generation, held);
}

#endif

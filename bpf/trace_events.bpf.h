/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * `trace`'s events: a transition, reset or retransmission with the socket's addresses and owner
 * (struct tcpstates_event), sent through the ring buffer or the perf buffer.
 */
#ifndef TCPSTATESD_BPF_TRACE_EVENTS_BPF_H
#define TCPSTATESD_BPF_TRACE_EVENTS_BPF_H

#include "maps.bpf.h"

/* The addresses of the segment a RST answers when it found no socket, seen from our side: its
 * destination is the local address. */
static __always_inline void segment_addresses(const struct sk_buff *segment, __u16 family,
					      struct tcpstates_event *e)
{
	unsigned char *ip = BPF_CORE_READ(segment, head) + BPF_CORE_READ(segment, network_header);

	if (family == AF_INET) {
		bpf_probe_read_kernel(e->raddr, 4, ip + 12); /* saddr */
		bpf_probe_read_kernel(e->laddr, 4, ip + 16); /* daddr */
	} else {
		bpf_probe_read_kernel(e->raddr, 16, ip + 8);
		bpf_probe_read_kernel(e->laddr, 16, ip + 24);
	}
}

/* The full event: the record, then who and where: the socket's addresses, or without a socket
 * the segment's. */
static __always_inline void fill_event(const struct sock *sk, const struct sk_buff *segment,
				       __u64 now, const struct tcpstates_transition *t,
				       const struct tcpstates_owner *owner,
				       struct tcpstates_event *e)
{
	e->transition = *t;
	e->skaddr = (__u64)sk;
	e->ts_ns = now;
	e->owner = *owner;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	if (!sk) {
		segment_addresses(segment, t->family, e);
	} else if (t->family == AF_INET) {
		bpf_core_read(e->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* Submit flags for a record of `size` bytes just reserved: one forced wake-up when the waiting
 * data crosses the threshold, none otherwise (see ringbuf_wakeup_bytes). */
static __always_inline __u64 ringbuf_submit_flags(__u64 size)
{
	__u64 waiting;

	if (!ringbuf_wakeup_bytes)
		return 0;
	waiting = bpf_ringbuf_query(&ring_events, BPF_RB_AVAIL_DATA);
	/* Each record also takes an 8-byte header in the ring. */
	if (waiting >= ringbuf_wakeup_bytes && waiting < ringbuf_wakeup_bytes + size + 8)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void send_event(void *ctx, const struct sock *sk,
				       const struct sk_buff *segment, __u64 now,
				       const struct tcpstates_transition *t,
				       const struct tcpstates_owner *owner, enum transport transport)
{
	if (transport == RING_BUFFER) {
		struct tcpstates_event *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);

		if (!e) {
			count(TCPSTATES_COUNTER_RINGBUF_FULL);
			return;
		}
		fill_event(sk, segment, now, t, owner, e);
		bpf_ringbuf_submit(e, ringbuf_submit_flags(sizeof(*e)));
	} else {
		struct tcpstates_event e;
		long err;

		fill_event(sk, segment, now, t, owner, &e);
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
		/* A full buffer reaches user space as a lost-sample record; count the rest. */
		if (err && err != -ENOSPC)
			count(TCPSTATES_COUNTER_PERFBUF_ERROR);
	}
}

#endif

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Resets and retransmissions (tracepoints tcp:tcp_send_reset, tcp_receive_reset,
 * tcp_retransmit_skb, tcp_retransmit_synack), each counted in the socket's state at that moment
 * under its record's tuple; the filters apply as to transitions. The kernel skips one of these
 * programs when it is already running on the CPU, as it does the transition programs; user space
 * counts those misses as losses.
 */
#ifndef TCPSTATESD_BPF_PACKETS_BPF_H
#define TCPSTATESD_BPF_PACKETS_BPF_H

#include "counts.bpf.h"
#include "records.bpf.h"
#include "recursion_marks.bpf.h"
#include "trace_events.bpf.h"
#include "transitions.bpf.h"

#define ETH_P_IPV6 0x86DD

/* What a packet report is about. */
struct packet {
	const struct sock *sk; /* a full socket, or NULL (a segment that found no socket) */
	const struct tcpstates_socket *record; /* the full socket's, if it has one */
	__u64 listener_cgroup; /* a SYN-ACK's: the listener's owner, whose child it makes */
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u8 kind;  /* enum tcpstates_record_kind */
	__u8 state;
	__u8 origin; /* if known from the report itself (a handshake's: PASSIVE), else 0 */
	__u32 reason; /* a sent reset's: enum sk_rst_reason (0, not specified, before 6.10) */
};

/* A sent reset, in its (state, reason) slot of the tuple if it has or finds one, else in the
 * reason-less count (struct tcpstates_reset_reason_count says why). A slot is claimed with a
 * compare-and-swap: two CPUs claiming one free slot for different pairs, the loser goes on. */
static __always_inline void count_reset_sent(struct tcpstates_tuple_counts *counts, __u32 state,
					     __u32 reason)
{
	__u64 key = tcpstates_reset_reason_key(state, reason);

	for (int i = 0; i < TCPSTATES_RESET_REASON_SLOTS; i++) {
		struct tcpstates_reset_reason_count *slot = &counts->reset_reasons[i];
		__u64 held = slot->key;

		if (!held) {
			held = __sync_val_compare_and_swap(&slot->key, 0, key);
			if (!held)
				held = key;
		}
		if (held == key) {
			__sync_fetch_and_add(&slot->count, 1);
			return;
		}
	}
	__sync_fetch_and_add(&counts->resets[TCPSTATES_RESET_SENT][state_slot(state)], 1);
}

static __always_inline void count_packet(const struct packet *p)
{
	int ipv6 = is_ipv6(p->family), overflow = 0;
	struct tcpstates_tuple_counts *counts, *gauge;
	__u32 state = p->state;

	if (!tcpstates_state_has_slot(state)) {
		count(TCPSTATES_COUNTER_STRANGE_STATE);
		return;
	}
	if (p->record)
		counts = record_counts(p->record, &gauge, 1);
	else
		counts = tuple_counts(ipv6, service_port(p->origin, p->lport, p->rport),
				      label_cgroup ? p->listener_cgroup : 0, &overflow, 1);
	if (!counts)
		return;
	if (p->kind == TCPSTATES_KIND_RETRANSMIT)
		__sync_fetch_and_add(&counts->retransmits[state_slot(state)], 1);
	else if (p->kind == TCPSTATES_KIND_RESET_SENT)
		count_reset_sent(counts, state, p->reason);
	else
		__sync_fetch_and_add(&counts->resets[TCPSTATES_RESET_RECEIVED][state_slot(state)],
				     1);
}

static __always_inline void report_packet(void *ctx, const struct packet *p,
					  const struct sk_buff *segment, enum transport transport)
{
	struct tcpstates_transition t = {
		.family = p->family,
		.lport = p->lport,
		.rport = p->rport,
		.old_state = p->state,
		.new_state = p->state,
		.kind = p->kind,
		.origin = p->origin ? p->origin : p->record ? p->record->origin : 0,
		.reset_reason = p->reason < 255 ? p->reason : 255,
	};
	struct tcpstates_owner owner = {};

	if (filtered_out(p->family, p->lport, p->rport))
		return;
	if (!event_details) {
		count_packet(p);
		return;
	}
	if (p->record)
		owner_of(p->sk, p->record, &owner);
	t.cgroup_id = owner.cgroup_id;
	send_event(ctx, p->sk, segment, bpf_ktime_get_ns(), &t, &owner, transport);
}

/* A RST sent: in answer to a segment (with or without a socket), or an abort. Without a socket
 * it is in CLOSE (RFC 793's CLOSED: no connection); a socket the kernel aborted (close() with
 * unread data, SO_LINGER 0, data after close(), a listener's unaccepted children) was moved to
 * CLOSE just before: its record says which state it left. An abort's RST sent before the move
 * (tcp_abort(), the timers' aborts) is noted in the record for the move's close reason. */
static __always_inline int reset_sent(void *ctx, const struct sock *sk,
				      const struct sk_buff *segment, __u32 reason,
				      enum transport transport)
{
	struct packet p = {.sk = sk, .kind = TCPSTATES_KIND_RESET_SENT, .reason = reason};
	struct tcpstates_socket *record;

	if (segment) {
		/* Its ports, from our side. */
		unsigned char *tcp = BPF_CORE_READ(segment, head) +
				     BPF_CORE_READ(segment, transport_header);
		__be16 ports[2] = {};

		bpf_probe_read_kernel(ports, sizeof(ports), tcp);
		p.rport = bpf_ntohs(ports[0]);
		p.lport = bpf_ntohs(ports[1]);
		p.family = bpf_ntohs(BPF_CORE_READ(segment, protocol)) == ETH_P_IPV6 ? AF_INET6
										       : AF_INET;
	} else if (sk) {
		/* an abort: the socket is in CLOSE */
		p.lport = local_port(sk, TCPSTATES_CLOSE, PROBED);
		p.rport = remote_port(sk, PROBED);
	} else {
		return 0;
	}
	if (!sk) {
		p.state = TCPSTATES_CLOSE;
	} else {
		/* an IPv4 peer of an IPv6 socket: the socket's family, as in its transitions */
		p.family = BPF_CORE_READ(sk, __sk_common.skc_family);
		p.state = BPF_CORE_READ(sk, __sk_common.skc_state);
		if (p.state == TCPSTATES_NEW_SYN_RECV) {
			p.state = TCPSTATES_SYN_RECV; /* a request's handshake: no record */
			p.origin = TCPSTATES_ORIGIN_PASSIVE;
		} else {
			p.record = record = find_record(sk);
			if (p.state == TCPSTATES_CLOSE && record &&
			    record->state == TCPSTATES_CLOSE && record->left_state)
				p.state = record->left_state;
			else if (!segment && record && record->state == p.state)
				record->reset_state = p.state;
		}
	}
	report_packet(ctx, &p, segment, transport);
	return 0;
}

/* A full socket's RST received or segment retransmitted, in its own state. */
static __always_inline void report_socket(void *ctx, const struct sock *sk, __u8 kind,
					  enum transport transport)
{
	__u8 state = sk->__sk_common.skc_state;
	struct packet p = {
		.sk = sk,
		.record = find_record(sk),
		.family = sk->__sk_common.skc_family,
		.lport = local_port(sk, state, DIRECT),
		.rport = remote_port(sk, DIRECT),
		.kind = kind,
		.state = state,
	};

	report_packet(ctx, &p, 0, transport);
}

/* A listener's SYN-ACK sent again: the handshake of a request socket, in SYN_RECV with the
 * request's ports, under the child it would make (the listener's owner, its port). */
static __always_inline void report_synack(void *ctx, const struct sock *listener,
					  const struct request_sock *req, enum transport transport)
{
	const struct tcpstates_socket *listening = find_record(listener);
	struct packet p = {
		.sk = listener,
		.family = req->__req_common.skc_family,
		.lport = req->__req_common.skc_num,
		.rport = bpf_ntohs(req->__req_common.skc_dport),
		.kind = TCPSTATES_KIND_RETRANSMIT,
		.state = TCPSTATES_SYN_RECV,
		.origin = TCPSTATES_ORIGIN_PASSIVE,
		.listener_cgroup = listening ? listening->cgroup_id : 0,
	};

	/* trace shows the listener's owner; the counts go to the child's tuple */
	if (event_details)
		p.record = listening;
	report_packet(ctx, &p, 0, transport);
}

/* The kernel destroys a socket: its record goes (uncounting it, should it not be in CLOSE). */
static __always_inline void destroyed(const struct sock *sk, int nested)
{
	struct tcpstates_socket *record;
	struct tcpstates_tuple_counts *gauge;

	if (nested && !first_program_skipped(TCPSTATES_FIRST_DESTROY_PROGRAM))
		return;
	record = find_record(sk);
	if (!record)
		return;
	if (nested)
		count(TCPSTATES_COUNTER_NESTED_DESTROYED);
	if (record->state != TCPSTATES_CLOSE) {
		record_counts(record, &gauge, 0);
		gauge_add(gauge, record->state, -1);
	}
	forget_socket(sk, record);
}

#endif

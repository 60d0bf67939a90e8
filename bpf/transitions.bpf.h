/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * One TCP state transition (sock:inet_sock_set_state): the socket's record moves to the new
 * state, its count in the gauge with it; the transition, its close reason and the time spent in
 * the old state are counted under the socket's tuple (or, for `trace`, sent as an event).
 *
 * Two programs are attached to the tracepoint, because the kernel does not run a program that is
 * already running on the CPU (an interrupt's transition arriving during a run): it skips it and
 * counts a recursion miss. The first program handles every transition it runs for; the nested
 * one handles those the kernel skipped the first for, which it reads in the first program's
 * recursion mark (bpf/recursion_marks.bpf.h). Lost are only transitions the kernel skipped both
 * for, which two levels of nesting (a task's and an interrupt's) cannot make; they would be
 * counted: the first program's misses exceed the transitions the nested program handled
 * (tcpstatesd_events_lost_total{reason="recursion"}).
 */
#ifndef TCPSTATESD_BPF_TRANSITIONS_BPF_H
#define TCPSTATESD_BPF_TRANSITIONS_BPF_H

#include "counts.bpf.h"
#include "queues.bpf.h"
#include "records.bpf.h"
#include "trace_events.bpf.h"

#include "exemplars.bpf.h"
#include "recursion_marks.bpf.h"

/* -1 when user space's filters leave this out of the counts, else 0. */
static __always_inline int filtered_out(__u16 family, __u16 lport, __u16 rport)
{
	if (filter_family && family != filter_family)
		return -1;
	if (filter_local_ports && !bpf_map_lookup_elem(&local_ports, &lport))
		return -1;
	if (filter_remote_ports && !bpf_map_lookup_elem(&remote_ports, &rport))
		return -1;
	return 0;
}

/* The socket's pending error at CLOSE: set before the move on refused, timed-out, reset and
 * unreachable connections (docs/metrics.md, "Close reasons"). An ICMP error that reached a
 * connecting socket while its connect() held it is only the soft error: the application then
 * sees it and closes the socket itself. Errnos fit a byte. */
static __always_inline __u8 close_error(const struct sock *sk, int old_state,
					enum access access)
{
	int error = SK_READ(access, sk, sk_err);

	if (!error && old_state == TCPSTATES_SYN_SENT)
		error = SK_READ(access, sk, sk_err_soft);
	return error > 0 && error < 256 ? error : 0;
}

/* An orphan in FIN_WAIT2 with TCP_LINGER2 < 0 goes to CLOSE only by __tcp_close()'s abort (it
 * sends the RST after the move): such a socket never waits in FIN_WAIT2 for the peer's FIN. */
static __always_inline int aborted_by_linger2(const struct sock *sk, enum access access)
{
	return (SK_READ(access, sk, __sk_common.skc_flags) >> SOCK_DEAD & 1) &&
	       BPF_CORE_READ((const struct tcp_sock *)sk, linger2) < 0;
}

/* A child's smoothed RTT as its handshake completes (struct tcp_sock's srtt_us): the kernel
 * takes the SYN-ACK's RTT sample, if it has one, before SYN_RECV -> ESTABLISHED (tcp_check_req,
 * tcp_rcv_state_process), and no other sample before it (docs/metrics.md, "Handshake
 * round-trip time"). */
static __always_inline __u32 handshake_srtt_us(const struct sock *sk)
{
	return BPF_CORE_READ((const struct tcp_sock *)sk, srtt_us);
}

/* The record of a socket that begins a life here (connect(), listen(), a listener's child), or
 * that the programs see for the first time in the middle of one. */
static __always_inline void start_record(struct tcpstates_socket *record, const struct sock *sk,
					 int ipv6, __u16 lport, __u16 rport, __u8 origin,
					 int new_state, __u64 now, struct tcpstates_owner *owner,
					 enum access access)
{
	if (origin == TCPSTATES_ORIGIN_ACTIVE || origin == TCPSTATES_ORIGIN_LISTENER)
		current_owner(owner);
	else if (origin == TCPSTATES_ORIGIN_PASSIVE)
		listener_owner(sk, ipv6, lport, owner, access);
	__builtin_memset(record, 0, sizeof(*record));
	record->net = (__u64)SK_READ(access, sk, __sk_common.skc_net.net);
	record->walked = walk_generation;
	record->since_ns = now;
	record->cgroup_id = label_cgroup || event_details ? owner->cgroup_id : 0;
	record->port = service_port(origin, lport, rport);
	record->state = new_state;
	record->origin = origin;
	record->flags = ipv6 ? TCPSTATES_SOCKET_IPV6 : 0;
}

static __always_inline void handle_transition(void *ctx, const struct sock *sk, int old_state,
					      int new_state, int nested, enum transport transport,
					      enum access access)
{
	struct tcpstates_tuple_counts *counts = 0, *gauge = 0;
	struct tcpstates_socket *entry, *record;
	struct tcpstates_owner owner = {};
	__u64 now, duration_ns = 0;
	int known_start = 0, overflow = 0, ports_read = 0, aborted = 0;
	__u16 family, lport = 0, rport = 0;
	__u8 origin;
	int ipv6;

	if (nested) {
		if (!first_program_skipped(TCPSTATES_FIRST_TRANSITION_PROGRAM))
			return;
		count(TCPSTATES_COUNTER_NESTED_HANDLED);
	}
	if (!is_tcp(sk, access))
		return;
	entry = record_entry(sk);
	record = live_record(entry);
	if (!tcpstates_state_has_slot(old_state) || !tcpstates_state_has_slot(new_state)) {
		count(TCPSTATES_COUNTER_STRANGE_STATE);
		return;
	}
	now = bpf_ktime_get_ns();
	origin = origin_of(old_state, new_state);

	if (record && origin == TCPSTATES_ORIGIN_UNKNOWN) {
		/* The same life goes on: the same tuple for the gauge's move and the counts. Nothing
		 * of the socket itself is read but what the filters or `trace` ask for. */
		ipv6 = (record->flags & TCPSTATES_SOCKET_IPV6) != 0;
		if (record->state != old_state)
			count(TCPSTATES_COUNTER_STATE_MISMATCH);
		else if (!(record->flags & TCPSTATES_SOCKET_START_UNKNOWN) &&
			 old_state != TCPSTATES_CLOSE)
			known_start = 1;
		duration_ns = now - record->since_ns;
		counts = record_counts(record, &gauge, notify_of(transport));
		gauge_add(gauge, record->state, -1);
		if (new_state == TCPSTATES_CLOSE) {
			record->left_state = old_state;
			aborted = record->reset_state == old_state;
		}
		record->reset_state = 0;
		record->state = new_state;
		record->since_ns = now;
		record->flags &= ~TCPSTATES_SOCKET_START_UNKNOWN;
		gauge_add(gauge, new_state, 1);
		if (event_details)
			owner_of(sk, record, &owner);
	} else {
		/* A new life (a new owner, origin and tuple), or the first sight of the socket. */
		struct tcpstates_socket fresh;

		ipv6 = is_ipv6(SK_READ(access, sk, __sk_common.skc_family));
		lport = local_port(sk, new_state, access);
		rport = remote_port(sk, access);
		ports_read = 1;
		if (record && record->state != TCPSTATES_CLOSE) {
			/* Left over from a socket destroyed unseen at this address: uncount it. */
			record_counts(record, &gauge, 0);
			gauge_add(gauge, record->state, -1);
		}
		start_record(&fresh, sk, ipv6, lport, rport, origin, new_state, now, &owner,
			     access);
		counts = tuple_counts(ipv6, fresh.port, fresh.cgroup_id, &overflow,
				      notify_of(transport));
		if (overflow)
			fresh.flags |= TCPSTATES_SOCKET_OVERFLOW;
		if (record)
			*record = fresh;
		else
			record = add_record(sk, entry, &fresh);
		if (record) {
			gauge_add(counts, new_state, 1);
			if (origin != TCPSTATES_ORIGIN_UNKNOWN)
				remember_task(sk, &owner);
		} else {
			count(TCPSTATES_COUNTER_STATE_FAILED);
		}
		if (origin == TCPSTATES_ORIGIN_LISTENER) {
			remember_listener(sk, ipv6, lport, &owner, access);
			listener_opened(sk, ipv6, service_port(origin, lport, 0));
		}
	}
	if (old_state == TCPSTATES_LISTEN && new_state == TCPSTATES_CLOSE) {
		lport = local_port(sk, new_state, access);
		forget_listener(sk, ipv6, lport, access);
		listener_closed(sk);
	}
	if (new_state == TCPSTATES_CLOSE && old_state == TCPSTATES_FIN_WAIT2 && !aborted)
		aborted = aborted_by_linger2(sk, access);
	family = ipv6 ? AF_INET6 : AF_INET;
	if (!ports_read && (filter_local_ports || filter_remote_ports || event_details)) {
		lport = local_port(sk, new_state, access);
		rport = remote_port(sk, access);
	}

	if (filtered_out(family, lport, rport))
		return;
	if (event_details) {
		struct tcpstates_transition t = {
			.duration_ns = known_start ? duration_ns : 0,
			.cgroup_id = owner.cgroup_id,
			.family = family,
			.lport = lport,
			.rport = rport,
			.old_state = old_state,
			.new_state = new_state,
			.flags = (known_start ? 0 : TCPSTATES_EVENT_START_UNKNOWN) |
				 (aborted ? TCPSTATES_EVENT_ABORTED : 0),
			.origin = record ? record->origin : origin,
			.close_error =
				new_state == TCPSTATES_CLOSE ? close_error(sk, old_state, access) : 0,
		};

		send_event(ctx, sk, 0, now, &t, &owner, transport);
		return;
	}
	if (counts) {
		__sync_fetch_and_add(
			&counts->transitions[state_slot(old_state)][state_slot(new_state)], 1);
		if (new_state == TCPSTATES_CLOSE) {
			__u32 reason = tcpstates_close_reason(
				old_state, close_error(sk, old_state, access), aborted);

			__sync_fetch_and_add(&counts->closes[state_slot(old_state)]
							    [bounded(reason, TCPSTATES_CLOSE_REASONS)],
					     1);
		}
	}
	if (known_start) {
		__u64 cgroup_id = record ? record->cgroup_id : 0;
		__u16 port = record ? record->port : 0;

		struct tcpstates_histogram *histogram;
		int labelled = observe_duration(ipv6, port, cgroup_id, old_state, new_state,
						duration_ns, &histogram);

		/* Not the nested program: bpf/exemplars.bpf.h says why. */
		if (exemplars && !nested && histogram)
			offer_if_slowest(histogram,
					 exemplar_series(port, ipv6, old_state, new_state, labelled),
					 cgroup_id, duration_ns, now, ctx);
	} else {
		count_unknown_start(ipv6, old_state, new_state);
	}
	/* A handshake completed by the server side: any but a simultaneous open's (connect()). */
	if (old_state == TCPSTATES_SYN_RECV && new_state == TCPSTATES_ESTABLISHED &&
	    !(record && record->origin == TCPSTATES_ORIGIN_ACTIVE))
		observe_handshake_rtt(ipv6, record ? record->port : 0,
				      record ? record->cgroup_id : 0, handshake_srtt_us(sk));
}

#endif

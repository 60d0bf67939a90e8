// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kernel half of tcpstatesd: the entry points. What each does lives beside it:
 *   maps.bpf.h         the maps, the settings user space writes, the programs' own counters
 *   records.bpf.h      a socket's record, ports, service port and owner
 *   counts.bpf.h       counting under label tuples, the gauge, the duration histograms
 *   native.bpf.h       the native histograms' exponential buckets
 *   exemplars.bpf.h    the slowest observation of each duration series, with its connection
 *   transitions.bpf.h  sock:inet_sock_set_state (the first and the nested program)
 *   recursion_marks.bpf.h  whether the kernel skipped the first program for a nested one's hit
 *   packets.bpf.h      resets, retransmissions, and the socket's end (tcp:*)
 *   trace_events.bpf.h the events `trace` prints
 *   walk.bpf.h         the walk of the existing sockets (iter/tcp)
 *   queues.bpf.h       accept queues, listeners' drops, ephemeral ports per destination
 *
 * The daemon counts in the maps: nothing crosses to user space per transition, so the counts are
 * exact at any rate whatever user space does, and a scrape reads counts, not sockets. `trace`
 * gets one event per transition through the ring buffer (or the perf buffer).
 *
 * tp_btf rather than the classic tracepoint: it attaches through bpf_link without tracefs
 * (not mounted on many hosts). The raw_tp variants serve kernels without BTF (events.btf_path).
 */
#include "packets.bpf.h"
#include "transitions.bpf.h"
#include "walk.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A nested and a first program for each transport and attach type (transitions.bpf.h says why
 * two); user space loads one set. The nested one comes first, so that it is attached before the
 * first one: the first one never runs without it. */
#define TRANSITION_PROGRAMS(name, section, transport, access)                                  \
	SEC(section)                                                                            \
	int BPF_PROG(name##_nested, const struct sock *sk, int old_state, int new_state)         \
	{                                                                                       \
		handle_transition(ctx, sk, old_state, new_state, 1, transport, access);         \
		return 0;                                                                       \
	}                                                                                       \
	SEC(section)                                                                            \
	int BPF_PROG(name, const struct sock *sk, int old_state, int new_state)                  \
	{                                                                                       \
		handle_transition(ctx, sk, old_state, new_state, 0, transport, access);         \
		return 0;                                                                       \
	}

TRANSITION_PROGRAMS(tcpstates_ringbuf, "tp_btf/inet_sock_set_state", RING_BUFFER, DIRECT)
TRANSITION_PROGRAMS(tcpstates_perfbuf, "tp_btf/inet_sock_set_state", PERF_BUFFER, DIRECT)
TRANSITION_PROGRAMS(tcpstates_ringbuf_raw, "raw_tp/inet_sock_set_state", RING_BUFFER, PROBED)
TRANSITION_PROGRAMS(tcpstates_perfbuf_raw, "raw_tp/inet_sock_set_state", PERF_BUFFER, PROBED)

/* The end of a socket's record: loaded with every set above, a nested and a first program, in
 * the order and for the reason of the transition programs. */
#define DESTROY_PROGRAMS(name, section)                                                        \
	SEC(section)                                                                            \
	int BPF_PROG(name##_nested, const struct sock *sk)                                      \
	{                                                                                       \
		(void)ctx;                                                                      \
		destroyed(sk, 1);                                                               \
		return 0;                                                                       \
	}                                                                                       \
	SEC(section)                                                                            \
	int BPF_PROG(name, const struct sock *sk)                                               \
	{                                                                                       \
		(void)ctx;                                                                      \
		destroyed(sk, 0);                                                               \
		return 0;                                                                       \
	}

DESTROY_PROGRAMS(tcpstates_destroy, "tp_btf/tcp_destroy_sock")
DESTROY_PROGRAMS(tcpstates_destroy_raw, "raw_tp/tcp_destroy_sock")

#define PACKET_PROGRAMS(suffix, transport)                                                     \
	SEC("tp_btf/tcp_send_reset")                                                            \
	int BPF_PROG(tcpstates_reset_sent##suffix) /* (sk, skb[, reason]): sk, skb nullable */ \
	{                                                                                       \
		return reset_sent(ctx, (const struct sock *)nullable_arg(ctx, 0),               \
				  (const struct sk_buff *)nullable_arg(ctx, 1),                 \
				  reset_reports_reason ? (__u32)ctx[2] : 0, transport);         \
	}                                                                                       \
	SEC("tp_btf/tcp_receive_reset")                                                         \
	int BPF_PROG(tcpstates_reset_received##suffix, const struct sock *sk)                   \
	{                                                                                       \
		report_socket(ctx, sk, TCPSTATES_KIND_RESET_RECEIVED, transport);               \
		return 0;                                                                       \
	}                                                                                       \
	SEC("tp_btf/tcp_retransmit_skb")                                                        \
	int BPF_PROG(tcpstates_retransmit##suffix, const struct sock *sk)                       \
	{                                                                                       \
		if (retransmit_reports_errors && (int)ctx[2] != 0)                              \
			return 0;                                                               \
		report_socket(ctx, sk, TCPSTATES_KIND_RETRANSMIT, transport);                   \
		return 0;                                                                       \
	}                                                                                       \
	SEC("tp_btf/tcp_retransmit_synack")                                                     \
	int BPF_PROG(tcpstates_retransmit_synack##suffix, const struct sock *sk,                \
		     const struct request_sock *req)                                            \
	{                                                                                       \
		report_synack(ctx, sk, req, transport);                                         \
		return 0;                                                                       \
	}

PACKET_PROGRAMS(_ringbuf, RING_BUFFER)
PACKET_PROGRAMS(_perfbuf, PERF_BUFFER)

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one header shared by the kernel program (bpf/tcpstates.bpf.c), the daemon (daemon/)
 * and the tests: the TCP states, the records the program writes (a compact transition for the
 * metrics, the same transition followed by the socket's identity for `trace`, the counts a walk
 * of the sockets reports), the per-socket record, the per-state socket counts, and the indexes of the
 * program's counters. Everything here is
 * ABI between the two halves of one binary: change both sides together.
 */
#ifndef TCPSTATESD_BPF_TCPSTATES_H
#define TCPSTATESD_BPF_TCPSTATES_H

#include <linux/types.h>

/* The kernel's TCP states (include/net/tcp_states.h), the numbers the tracepoint reports. */
enum tcpstates_tcp_state {
	TCPSTATES_ESTABLISHED = 1,
	TCPSTATES_SYN_SENT,
	TCPSTATES_SYN_RECV,
	TCPSTATES_FIN_WAIT1,
	TCPSTATES_FIN_WAIT2,
	TCPSTATES_TIME_WAIT,
	TCPSTATES_CLOSE,
	TCPSTATES_CLOSE_WAIT,
	TCPSTATES_LAST_ACK,
	TCPSTATES_LISTEN,
	TCPSTATES_CLOSING,
	TCPSTATES_NEW_SYN_RECV,
	TCPSTATES_BOUND_INACTIVE,
	TCPSTATES_MAX_STATE = TCPSTATES_BOUND_INACTIVE,
};

#define TCPSTATES_COMM_LEN 16

/* Set on a transition when the program had no (trustworthy) record of when the socket entered
 * old_state: its first sight of the socket (new, passively opened, or older than the daemon),
 * a full socket table, or a stored state that did not match (a transition was missed).
 * duration_ns is 0 and must not be used. */
#define TCPSTATES_EVENT_START_UNKNOWN 0x1

/* One TCP state transition: all the metrics need, the record the daemon asks for (so that
 * the ring buffer holds three times as many as full events, and the program copies no
 * addresses or command names). */
struct tcpstates_transition {
	__u64 duration_ns; /* time spent in old_state; valid unless START_UNKNOWN */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u16 lport;       /* local port, host byte order (0 before an active open binds) */
	__u16 rport;       /* remote port, host byte order */
	__u8 old_state;    /* enum tcpstates_tcp_state */
	__u8 new_state;
	__u8 flags;        /* TCPSTATES_EVENT_* */
	__u8 pad[7];
};

/* A transition with the socket's identity and context: what `trace` prints. */
struct tcpstates_event {
	struct tcpstates_transition transition; /* first: a full event is also a transition */
	__u64 skaddr;   /* kernel address of the struct sock: an identity, not a pointer */
	__u64 ts_ns;    /* bpf_ktime_get_ns() at the transition (CLOCK_MONOTONIC) */
	__u32 pid;      /* tgid of the task on the CPU: often not the socket's owner */
	__u8 pad[4];
	__u8 laddr[16]; /* IPv4: first 4 bytes, network byte order */
	__u8 raddr[16];
	char comm[TCPSTATES_COMM_LEN];
};

/* What the program remembers of each socket it has seen: in the socket's own storage
 * (BPF_MAP_TYPE_SK_STORAGE, freed with the socket), or on kernels without BTF in a bounded hash
 * table keyed by the socket's address. */
struct tcpstates_socket {
	__u64 since_ns; /* when the socket entered `state` */
	__u16 family;
	__u8 state;
	__u8 pad[5];
};

/* Who writes a per-CPU slot of the `counters` and `socket_counts` arrays: each writer has
 * slots of its own, so that a program interrupted on its CPU by the other (see the nested
 * program in tcpstates.bpf.c) never loses an update. User space sums them all. */
enum tcpstates_writer {
	TCPSTATES_WRITER_FIRST = 0, /* the tracepoint's first program */
	TCPSTATES_WRITER_NESTED,    /* the program that runs when the first one is interrupted */
	TCPSTATES_WRITERS,
};

/* Sockets per family and state, in slots of these. The walk (iter/tcp) counts every socket of
 * the daemon's network namespace this way; the tracepoint programs keep the count of other
 * namespaces' sockets as per-CPU deltas in the `socket_counts` array (a state's value is the
 * sum over CPUs and writers): such a socket is counted in its stored state from the moment it
 * has a `struct tcpstates_socket` until CLOSE. */
#define TCPSTATES_STATE_SLOTS (TCPSTATES_MAX_STATE + 1)
#define TCPSTATES_SOCKET_COUNT_SLOTS (2 * TCPSTATES_STATE_SLOTS)

/* The slot of a family and state (an unknown state goes to slot 0 of its family, unused). */
static inline __u32 tcpstates_socket_count_slot(int is_ipv6, __u32 state)
{
	return (is_ipv6 ? TCPSTATES_STATE_SLOTS : 0) + (state < TCPSTATES_STATE_SLOTS ? state : 0);
}

/* What a walk of the network namespace's sockets (iter/tcp) writes once it has visited them
 * all: sockets per slot, in the states `ss` reports (a timewait socket in its substate,
 * TIME_WAIT or FIN_WAIT2; a request socket in SYN_RECV). */
struct tcpstates_walk_counts {
	__u64 sockets[TCPSTATES_SOCKET_COUNT_SLOTS];
};

/* Indexes into the per-CPU `counters` array map. */
enum tcpstates_counter {
	TCPSTATES_COUNTER_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve failed: event lost */
	TCPSTATES_COUNTER_PERFBUF_ERROR,    /* perf output failed for a reason other than a full buffer */
	TCPSTATES_COUNTER_STATE_FAILED,     /* a socket's state could not be stored: no durations */
	TCPSTATES_COUNTER_STATE_MISMATCH,   /* stored state was not the transition's old state */
	TCPSTATES_COUNTER_NESTED_RUNS,      /* runs of the nested program: events the first one missed */
	TCPSTATES_COUNTER_MAX,
};

/* Upper bound for each port allow-list (source, destination). */
#define TCPSTATES_MAX_FILTER_PORTS 1024

#endif

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

/* How a socket came to be, as its transitions tell: what its service port is (the remote port
 * of an active open, the local port of a listener and of its passively opened children). */
enum tcpstates_origin {
	TCPSTATES_ORIGIN_UNKNOWN = 0, /* first seen later in its life (older than the daemon) */
	TCPSTATES_ORIGIN_ACTIVE,      /* CLOSE -> SYN_SENT: connect() */
	TCPSTATES_ORIGIN_LISTENER,    /* CLOSE -> LISTEN: listen() */
	TCPSTATES_ORIGIN_PASSIVE,     /* LISTEN -> SYN_RECV: a child of a listener */
};

/* Who owns a socket: the task that called connect() or listen() (a passively opened child
 * inherits its listener's owner). All zero when unknown. */
struct tcpstates_owner {
	__u64 cgroup_id; /* the task's cgroup v2 id (the cgroup directory's inode number) */
	__u32 pid;       /* tgid */
	char comm[TCPSTATES_COMM_LEN];
	__u8 pad[4];
};

/* Set on a transition when the program had no (trustworthy) record of when the socket entered
 * old_state: its first sight of the socket (new, passively opened, or older than the daemon),
 * a full socket table, or a stored state that did not match (a transition was missed).
 * duration_ns is 0 and must not be used. */
#define TCPSTATES_EVENT_START_UNKNOWN 0x1

/* What a record reports. Resets and retransmissions travel in the same record as the state
 * changes, in the socket's state at that moment (old_state == new_state). */
enum tcpstates_record_kind {
	TCPSTATES_KIND_TRANSITION = 0,  /* old_state -> new_state */
	TCPSTATES_KIND_RESET_SENT,      /* a RST sent; a segment with no socket: state CLOSE */
	TCPSTATES_KIND_RESET_RECEIVED,  /* a RST accepted by the socket */
	TCPSTATES_KIND_RETRANSMIT,      /* a segment sent again (SYN_RECV: the SYN-ACK) */
	TCPSTATES_KINDS,
};

/* One TCP state transition: all the metrics need, the record the daemon asks for (so that
 * the ring buffer holds 3 times as many as full events: 40 bytes with the ring buffer's
 * 8-byte header against 120, and the program copies no addresses or command names). */
struct tcpstates_transition {
	__u64 duration_ns; /* time spent in old_state; valid unless START_UNKNOWN */
	__u64 cgroup_id;   /* the owner's (struct tcpstates_owner); 0: owner unknown */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u16 lport;       /* local port, host byte order (0 before an active open binds) */
	__u16 rport;       /* remote port, host byte order */
	__u8 old_state;    /* enum tcpstates_tcp_state */
	__u8 new_state;
	__u8 flags;        /* TCPSTATES_EVENT_* */
	__u8 origin;       /* enum tcpstates_origin */
	__u8 kind;         /* enum tcpstates_record_kind */
	__u8 close_error;  /* to CLOSE: the socket's pending error (sk_err, an errno), else 0 */
	__u8 pad[4];
};

/* A transition with the socket's identity and owner: what `trace` prints. */
struct tcpstates_event {
	struct tcpstates_transition transition; /* first: a full event is also a transition */
	__u64 skaddr;   /* kernel address of the struct sock: an identity, not a pointer (0: none) */
	__u64 ts_ns;    /* bpf_ktime_get_ns() at the transition (CLOCK_MONOTONIC) */
	struct tcpstates_owner owner; /* not the task on the CPU, which in softirq is anyone */
	__u8 laddr[16]; /* IPv4: first 4 bytes, network byte order */
	__u8 raddr[16];
};

/* What the program remembers of each socket it has seen: in the socket's own storage
 * (BPF_MAP_TYPE_SK_STORAGE, freed with the socket), or on kernels without BTF in a bounded hash
 * table keyed by the socket's address. */
struct tcpstates_socket {
	__u64 since_ns; /* when the socket entered `state` */
	struct tcpstates_owner owner;
	__u16 family;
	__u8 state;
	__u8 origin; /* enum tcpstates_origin */
	__u8 pad[4];
};

/* Who writes a per-CPU slot of the `counters` and `socket_counts` arrays: each writer has
 * slots of its own, so that a program interrupted on its CPU by the other (see the nested
 * program in tcpstates.bpf.c) never loses an update. User space sums them all. */
enum tcpstates_writer {
	TCPSTATES_WRITER_FIRST = 0, /* the tracepoint's first program */
	TCPSTATES_WRITER_NESTED,    /* the program that runs when the first one is interrupted */
	TCPSTATES_WRITER_PACKETS,   /* the reset and retransmission programs (atomic adds) */
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
 * TIME_WAIT or FIN_WAIT2; a request socket in SYN_RECV), and the local ports that have a
 * listener (bit p % 64 of listening_ports[p / 64]). */
struct tcpstates_walk_counts {
	__u64 sockets[TCPSTATES_SOCKET_COUNT_SLOTS];
	__u64 listening_ports[65536 / 64];
};

/* One socket as a detailed walk reports it (walk_details): what its gauge labels are made of.
 * A detailed walk writes one per socket, then its struct tcpstates_walk_counts. */
struct tcpstates_walked_socket {
	__u64 cgroup_id; /* the owner's; 0: unknown */
	__u16 family;
	__u16 lport; /* host byte order */
	__u16 rport;
	__u8 state;  /* as in struct tcpstates_walk_counts */
	__u8 origin; /* enum tcpstates_origin */
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

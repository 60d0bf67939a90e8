/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one header shared by the kernel programs (bpf/) and the daemon (daemon/): the TCP states,
 * the close reasons, the per-socket record, the counts the programs keep per label tuple, the
 * duration histograms, the records the ring buffer carries (a trace event, a new tuple) and the
 * indexes of the programs' own counters. Everything here is ABI between the two halves of one
 * binary: change both sides together. Sizes are asserted at the end.
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

/* The states a full socket moves between (ESTABLISHED .. CLOSING), each the index of its slot in
 * the counts below; slot 0 is unused. A request socket (NEW_SYN_RECV) and the diagnostic
 * BOUND_INACTIVE make no transition; the programs count a transition outside these slots in
 * TCPSTATES_COUNTER_STRANGE_STATE instead. */
#define TCPSTATES_STATE_SLOTS (TCPSTATES_CLOSING + 1)

static inline int tcpstates_state_has_slot(unsigned int state)
{
	return state >= TCPSTATES_ESTABLISHED && state <= TCPSTATES_CLOSING;
}

#define TCPSTATES_COMM_LEN 16

/* How a socket came to be, as its transitions tell: what its service port is (the remote port
 * of an active open, the local port of a listener and of its passively opened children). */
enum tcpstates_origin {
	TCPSTATES_ORIGIN_UNKNOWN = 0, /* first seen later in its life (older than the daemon) */
	TCPSTATES_ORIGIN_ACTIVE,      /* CLOSE -> SYN_SENT: connect() */
	TCPSTATES_ORIGIN_LISTENER,    /* CLOSE -> LISTEN: listen() */
	TCPSTATES_ORIGIN_PASSIVE,     /* LISTEN -> SYN_RECV: a child of a listener */
};

/* Whether a port is a service port: bit p % 64 of service_ports[p / 64] (labels.port.ports, and
 * with "listening" every port listened on). */
static inline int tcpstates_is_service_port(const __u64 *service_ports, __u16 port)
{
	return port && (service_ports[port / 64] >> (port % 64)) & 1;
}

/* A socket's service port, 0 if none (docs/metrics.md, "Labels"): the remote port of an active
 * open, the local port of a listener and its children (any listener's with `listening`), and for
 * a socket first seen later in its life whichever of its ports is a service port, local first. */
static inline __u16 tcpstates_service_port(const __u64 *service_ports, int listening,
					   __u8 origin, __u16 lport, __u16 rport)
{
	switch (origin) {
	case TCPSTATES_ORIGIN_ACTIVE:
		return tcpstates_is_service_port(service_ports, rport) ? rport : 0;
	case TCPSTATES_ORIGIN_LISTENER:
	case TCPSTATES_ORIGIN_PASSIVE:
		return lport && (listening || tcpstates_is_service_port(service_ports, lport)) ? lport
											    : 0;
	default:
		if (tcpstates_is_service_port(service_ports, lport))
			return lport;
		return tcpstates_is_service_port(service_ports, rport) ? rport : 0;
	}
}

/*
 * Why a socket closed (the `reason` of tcpstates_closes_total, trace's REASON), from what the
 * kernel leaves on the socket at its transition to CLOSE: its pending error (an errno) and the
 * state it leaves. docs/metrics.md, "Close reasons", is the table.
 */
enum tcpstates_close_reason {
	TCPSTATES_CLOSE_NORMAL = 0,
	TCPSTATES_CLOSE_REFUSED,
	TCPSTATES_CLOSE_TIMEOUT,
	TCPSTATES_CLOSE_RESET,
	TCPSTATES_CLOSE_UNREACHABLE,
	TCPSTATES_CLOSE_CANCELED,
	TCPSTATES_CLOSE_OTHER,
	TCPSTATES_CLOSE_ABORTED, /* given up here: an application's or the kernel's abort */
	TCPSTATES_CLOSE_REASONS,
};

/* The errnos close reasons are made of (asm-generic/errno*.h, the same on every architecture
 * Linux runs BPF on). */
#define TCPSTATES_EACCES 13
#define TCPSTATES_EPIPE 32
#define TCPSTATES_ENONET 64
#define TCPSTATES_ENETDOWN 100
#define TCPSTATES_ENETUNREACH 101
#define TCPSTATES_ECONNABORTED 103
#define TCPSTATES_ECONNRESET 104
#define TCPSTATES_ETIMEDOUT 110
#define TCPSTATES_ECONNREFUSED 111
#define TCPSTATES_EHOSTDOWN 112
#define TCPSTATES_EHOSTUNREACH 113

/* `aborted`: the programs saw the kernel abort the socket in `from_state` although it left no
 * error: it sent an abort's RST in that state just before (the orphan FIN_WAIT2 timeout, an
 * orphan out of memory or one too many: tcp_timer.c), or the socket is an orphan in FIN_WAIT2
 * with TCP_LINGER2 < 0 (__tcp_close() moves it to CLOSE, then sends the RST). */
static inline enum tcpstates_close_reason tcpstates_close_reason(unsigned int from_state,
								  unsigned int error, int aborted)
{
	switch (error) {
	case 0:
		break;
	case TCPSTATES_ECONNREFUSED: /* a RST in answer to the SYN, or ICMP port unreachable */
		return TCPSTATES_CLOSE_REFUSED;
	case TCPSTATES_ETIMEDOUT: /* retransmissions or keepalive probes unanswered */
		return TCPSTATES_CLOSE_TIMEOUT;
	case TCPSTATES_ECONNRESET: /* a RST received (tcp_reset) */
	case TCPSTATES_EPIPE:      /* a RST received in CLOSE_WAIT */
		return TCPSTATES_CLOSE_RESET;
	case TCPSTATES_ECONNABORTED: /* tcp_abort(): ss -K, SOCK_DESTROY, bpf_sock_destroy() */
		return TCPSTATES_CLOSE_ABORTED;
	/* What ICMP destination-unreachable codes become (icmp_err_convert, icmpv6_err_convert):
	 * no route, host unknown or isolated, administratively prohibited. */
	case TCPSTATES_ENETUNREACH:
	case TCPSTATES_EHOSTUNREACH:
	case TCPSTATES_EHOSTDOWN:
	case TCPSTATES_ENETDOWN:
	case TCPSTATES_ENONET:
	case TCPSTATES_EACCES:
		return TCPSTATES_CLOSE_UNREACHABLE;
	default:
		return TCPSTATES_CLOSE_OTHER;
	}
	switch (from_state) {
	/* The application closed the socket before the handshake completed. */
	case TCPSTATES_SYN_SENT:
		return TCPSTATES_CLOSE_CANCELED;
	/* Without an error, the kernel leaves these states for CLOSE only by aborting the
	 * connection (a RST follows where the state needs one): close() with unread data,
	 * SO_LINGER 0, a listener's close() for its children not yet accepted, a child the kernel
	 * could not complete, shutdown by memory pressure. */
	case TCPSTATES_SYN_RECV:
	case TCPSTATES_ESTABLISHED:
	case TCPSTATES_CLOSE_WAIT:
	case TCPSTATES_FIN_WAIT1:
		return TCPSTATES_CLOSE_ABORTED;
	/* The end of an orderly close (FIN_WAIT2, LAST_ACK, CLOSING), unless aborted; a
	 * listener's close(). */
	default:
		return aborted ? TCPSTATES_CLOSE_ABORTED : TCPSTATES_CLOSE_NORMAL;
	}
}

/*
 * What the programs remember of each socket they have seen, in a hash table keyed by the
 * socket's address (the `socket_records` map): from its first transition (or the daemon's walk
 * of the existing sockets) until the kernel destroys the socket (tcp:tcp_destroy_sock). It
 * names the label tuple the socket is counted under, so that every change of its state moves
 * one count within that tuple, whatever the labels' configuration has become meanwhile.
 */
struct tcpstates_socket {
	__u64 since_ns;  /* when the socket entered `state` (bpf_ktime_get_ns); with
			  * TCPSTATES_SOCKET_START_UNKNOWN, when a walk first saw it there */
	__u64 cgroup_id; /* the owner's cgroup id (its tuple's); 0: unknown */
	__u64 net;       /* its network namespace (the struct net's address): an identity; or,
			  * its socket destroyed, TCPSTATES_NET_DESTROYED (the record awaits the next
			  * socket at its address or the sweep) or TCPSTATES_NET_DELETING (the sweep's) */
	__u16 port;      /* its service port (its tuple's); 0: none */
	__u8 state;      /* enum tcpstates_tcp_state */
	__u8 left_state; /* in CLOSE: the state it left (what an abort's RST was sent in) */
	__u8 origin;     /* enum tcpstates_origin */
	__u8 flags;      /* TCPSTATES_SOCKET_* */
	__u8 walked;     /* the generation of the last walk that saw it (or of its making) */
	__u8 reset_state; /* the state it sent an abort's RST in, since its last transition; 0: none */
};
/* No namespace has these addresses. */
#define TCPSTATES_NET_DESTROYED 0
#define TCPSTATES_NET_DELETING 1

/* Whether an entry of the record table is a destroyed socket's, not a socket's record. */
static inline int tcpstates_record_destroyed(const struct tcpstates_socket *entry)
{
	return entry->net == TCPSTATES_NET_DESTROYED || entry->net == TCPSTATES_NET_DELETING;
}

#define TCPSTATES_SOCKET_IPV6 0x1
/* Its tuple is the overflow tuple: the tuple table was full when its tuple was first needed. */
#define TCPSTATES_SOCKET_OVERFLOW 0x2
/* The programs did not see it enter `state` (a socket older than the daemon, or a missed
 * transition, both found by a walk): since_ns is when the walk found it there, a lower bound of
 * its time in `state`, never a duration's start. Its next transition clears it. */
#define TCPSTATES_SOCKET_START_UNKNOWN 0x4

/*
 * A label tuple: what a series' optional labels are made of. The programs count every
 * transition, close, reset, retransmission and socket under its socket's tuple; user space turns
 * the port and the cgroup id into label values (or "other") when scraped. A label no family
 * carries is 0 in every tuple (user space tells the programs, see `label_port`).
 */
struct tcpstates_tuple_key {
	__u64 cgroup_id; /* 0: unknown owner */
	__u16 port;      /* the service port; 0: none */
	__u8 ipv6;       /* 0: IPv4, 1: IPv6 */
	__u8 flags;      /* TCPSTATES_TUPLE_* */
	__u8 pad[4];
};
/* The tuple that takes the counts of tuples the table had no room for (cgroup_id and port 0). */
#define TCPSTATES_TUPLE_OVERFLOW 0x1

/*
 * Sent resets by the kernel's reason (enum sk_rst_reason, Linux >= 6.10; 0, "not specified",
 * before): a dense [reason][state] array per tuple (25 reasons on 6.18) would double its size,
 * and a tuple sees few pairs. So a few slots, each claimed by the first reset of a (state,
 * reason) pair (key 0: free);
 * a sent reset whose pair found every slot taken is counted in resets[TCPSTATES_RESET_SENT]
 * (user space exports it with reason "other"). resets[TCPSTATES_RESET_SENT] counts only those.
 */
#define TCPSTATES_RESET_REASON_SLOTS 8
struct tcpstates_reset_reason_count {
	__u64 key; /* tcpstates_reset_reason_key(state, reason); 0: free */
	__u64 count;
};

static inline __u64 tcpstates_reset_reason_key(unsigned int state, unsigned int reason)
{
	return (__u64)state << 32 | reason; /* a state is never 0: a claimed key never is */
}

/* Everything counted under one tuple. The gauge is signed: after the tuple table was swapped
 * (user space folds its old counts into totals of its own) a socket counted in the old table
 * leaves its state in the new one. */
struct tcpstates_tuple_counts {
	__u64 transitions[TCPSTATES_STATE_SLOTS][TCPSTATES_STATE_SLOTS]; /* [from][to] */
	__u64 closes[TCPSTATES_STATE_SLOTS][TCPSTATES_CLOSE_REASONS];    /* [from][reason] */
	__s64 sockets[TCPSTATES_STATE_SLOTS];                           /* full sockets now */
	__u64 resets[2][TCPSTATES_STATE_SLOTS]; /* [TCPSTATES_RESET_*][state] */
	__u64 retransmits[TCPSTATES_STATE_SLOTS];
	struct tcpstates_reset_reason_count reset_reasons[TCPSTATES_RESET_REASON_SLOTS];
};
#define TCPSTATES_RESET_SENT 0
#define TCPSTATES_RESET_RECEIVED 1

/*
 * Duration histograms (tcpstates_state_duration_seconds): the time a socket spent in `from`
 * before it moved to `to`, bucketed by the programs with the configured upper bounds. buckets[i]
 * counts the observations in (bound[i-1], bound[i]]; the one after the last bound is +Inf.
 * Observations whose start is unknown are not made.
 */
#define TCPSTATES_MAX_BUCKETS 64
struct tcpstates_histogram {
	__u64 sum_ns;
	/* The programs' own: the slowest exemplar candidate of the series offered in the exemplar
	 * tables' current generation (bpf/exemplars.bpf.h). Not a count: user space ignores it. */
	__u64 exemplar_hint;
	__u64 buckets[TCPSTATES_MAX_BUCKETS + 1];
	/* Observations whose native bucket could not be stored (struct tcpstates_native_key): the
	 * series' native buckets are incomplete, and it is served with classic buckets only. */
	__u64 native_lost;
};

/* The bucket bounds in force, in nanoseconds: `count` finite bounds, strictly increasing. Two
 * generations: user space writes the one not in use, then switches `bucket_generation`. */
struct tcpstates_bucket_bounds {
	__u64 bound_ns[TCPSTATES_MAX_BUCKETS];
	__u32 count;
	__u32 pad;
};

/* The histograms without labels (and those whose labelled key found no room) are an array:
 * this slot of it. */
static inline __u32 tcpstates_duration_slot(__u32 generation, __u32 ipv6, __u32 from, __u32 to)
{
	return ((generation * 2 + ipv6) * TCPSTATES_STATE_SLOTS + from) * TCPSTATES_STATE_SLOTS + to;
}
#define TCPSTATES_DURATION_SLOTS (2 * 2 * TCPSTATES_STATE_SLOTS * TCPSTATES_STATE_SLOTS)

/* Which metric a labelled histogram is of. */
enum tcpstates_histogram_kind {
	TCPSTATES_HISTOGRAM_DURATION = 0, /* tcpstates_state_duration_seconds: from, to */
	TCPSTATES_HISTOGRAM_HANDSHAKE_RTT, /* tcpstates_handshake_rtt_seconds: from, to 0 */
};

/* A labelled histogram's key (when durations or handshake RTTs carry a label). */
struct tcpstates_duration_key {
	__u64 cgroup_id;
	__u16 port;
	__u8 ipv6;
	__u8 from;
	__u8 to;
	__u8 generation;
	__u8 kind; /* enum tcpstates_histogram_kind */
	__u8 pad;
};

/*
 * Handshake RTTs (tcpstates_handshake_rtt_seconds): the SYN-ACK to ACK time of each passively
 * opened connection, the kernel's one RTT sample of the handshake, read from the child's
 * smoothed RTT at SYN_RECV -> ESTABLISHED (docs/metrics.md says when the kernel has none).
 * Bucketed with bounds of their own (handshake_rtt_bounds), switched with the duration bounds'
 * generation. Without labels (or when the labelled table has no room): this slot of the
 * `handshake_rtts` array.
 */
static inline __u32 tcpstates_handshake_rtt_slot(__u32 generation, __u32 ipv6)
{
	return generation * 2 + ipv6;
}
#define TCPSTATES_HANDSHAKE_RTT_SLOTS 4

/*
 * Native histograms (Prometheus' exponential buckets): bucket i of schema s holds the durations
 * in (2^((i-1)/2^s), 2^(i/2^s)] seconds. In integer nanoseconds that is exactly
 * floor(1e9 * 2^((i-1)/2^s)) < d <= floor(1e9 * 2^(i/2^s)): user space computes these floors
 * (daemon/kernel/native_bounds.cpp) for the indexes from the bucket of 1 ns to the bucket that
 * ends at 2^TCPSTATES_NATIVE_TOP_LOG2 s (a boundary at every schema), and the programs look
 * durations up in them by their top bits (tcpstates_native_cell). A duration of 0 goes to the
 * zero bucket; a longer one than the top bound is not placed (the series' native_lost). Two
 * generations, switched with the classic bounds'.
 */
#define TCPSTATES_NATIVE_MIN_SCHEMA (-4)
#define TCPSTATES_NATIVE_MAX_SCHEMA 8
#define TCPSTATES_NATIVE_TOP_LOG2 25 /* 2^25 s: 388 days */
/* At schema 8: from the bucket of 1 ns (index -7653) to 25 * 256, 14054 bounds. */
#define TCPSTATES_NATIVE_MAX_BOUNDS 14080
/* Cells of durations by their top bits: floor(log2 d) (0 .. 63) and the `cell_bits` bits below
 * the top one, max(schema + 1, 0) <= TCPSTATES_NATIVE_MAX_SCHEMA + 1 (tcpstates_native_cell). */
#define TCPSTATES_NATIVE_CELLS (64 << (TCPSTATES_NATIVE_MAX_SCHEMA + 1))
struct tcpstates_native_bounds {
	__u64 bound_ns[TCPSTATES_NATIVE_MAX_BOUNDS];
	/* Per cell, the position in bound_ns of the bucket of its smallest duration: a duration d of
	 * the cell is at that position p, or at p + 1 when bound_ns[p] < d. */
	__u16 cell_position[TCPSTATES_NATIVE_CELLS];
	__s32 first_index; /* the index of bound_ns[0]'s bucket */
	__u32 count;       /* 0: native histograms off */
	__u32 cell_bits;
	__u32 pad;
};

/*
 * The cell of a duration 1 <= d < 2^63: (floor(log2 d) << bits) | the `bits` bits below d's
 * top bit (below 2^bits, d's bits shifted up: one duration per used cell). The same code in
 * the programs and in user space's tests. No branch: the verifier follows one path, and the
 * logarithm costs 6 shifts where BPF has no instruction that counts leading zeros.
 *
 * Why one comparison finishes the lookup: a cell of floor(log2 d) = L >= bits spans
 * w = 2^(L - bits) durations [c, c + w). Two bounds b < b' inside [c, c + w - 1) would be at
 * most w - 2 apart. But b' - b > x' - x - 1 for b = floor(x), b' = floor(x'), x' = x * r with
 * r = 2^(2^-schema) the bucket's growth, and x >= b >= c >= 2^L, so
 * b' - b > 2^L (r - 1) - 1 >= 2^L ln 2 / 2^schema - 1 (as 2^t - 1 >= t ln 2 for t >= 0)
 * = w 2^(bits - schema) ln 2 - 1 >= 1.38 w - 1 with bits >= schema + 1: so b' - b >= w (whole
 * numbers), a contradiction. At most one bound lies in [c, c + w - 1), and a duration of the cell is in the
 * bucket of c or the next one. Below 2^bits a cell holds one duration: its bucket is c's.
 */
static inline __u32 tcpstates_native_cell(__u64 d, __u32 bits)
{
	__u64 x = d, shift;
	__u32 log2 = 0;

	/* (2^k - 1 - x) >> 63 is x >= 2^k, for x < 2^63. */
	shift = ((0xffffffffULL - x) >> 63) << 5;
	x >>= shift;
	log2 += shift;
	shift = ((0xffffULL - x) >> 63) << 4;
	x >>= shift;
	log2 += shift;
	shift = ((0xffULL - x) >> 63) << 3;
	x >>= shift;
	log2 += shift;
	shift = ((0xfULL - x) >> 63) << 2;
	x >>= shift;
	log2 += shift;
	shift = ((0x3ULL - x) >> 63) << 1;
	x >>= shift;
	log2 += shift;
	log2 += (0x1ULL - x) >> 63;
	return (log2 << bits) | (__u32)(((d << bits) >> log2) & ((1ULL << bits) - 1));
}
/* The zero bucket's index in a native key. */
#define TCPSTATES_NATIVE_ZERO_INDEX (-2147483647 - 1)

/* One native bucket of a histogram (a hash table swapped with the labelled histograms'):
 * `series` as the histogram's labelled key (cgroup_id and port 0 when `unlabelled`: the
 * unlabelled array's histogram of the same family, states or kind). */
struct tcpstates_native_key {
	struct tcpstates_duration_key series;
	__s32 index; /* the bucket's, or TCPSTATES_NATIVE_ZERO_INDEX */
	__u8 unlabelled;
	__u8 pad[3];
};

/* Transitions whose start was not seen, per family, from and to (never a duration). */
static inline __u32 tcpstates_unknown_start_slot(__u32 ipv6, __u32 from, __u32 to)
{
	return (ipv6 * TCPSTATES_STATE_SLOTS + from) * TCPSTATES_STATE_SLOTS + to;
}
#define TCPSTATES_UNKNOWN_START_SLOTS (2 * TCPSTATES_STATE_SLOTS * TCPSTATES_STATE_SLOTS)

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
/* To CLOSE: the programs saw the kernel abort the socket (tcpstates_close_reason's `aborted`). */
#define TCPSTATES_EVENT_ABORTED 0x2

/* What a trace event reports. Resets and retransmissions are reported in the socket's state at
 * that moment (old_state == new_state). */
enum tcpstates_record_kind {
	TCPSTATES_KIND_TRANSITION = 0,  /* old_state -> new_state */
	TCPSTATES_KIND_RESET_SENT,      /* a RST sent; a segment with no socket: state CLOSE */
	TCPSTATES_KIND_RESET_RECEIVED,  /* a RST accepted by the socket */
	TCPSTATES_KIND_RETRANSMIT,      /* a segment sent again (SYN_RECV: the SYN-ACK) */
	TCPSTATES_KINDS,
};

/* One transition, reset or retransmission as `trace` reports it. */
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
	__u8 reset_reason; /* RESET_SENT: the kernel's reason (enum sk_rst_reason), at most 255 */
	__u8 pad[3];
};

/* A transition with the socket's identity and owner: what `trace` prints. */
struct tcpstates_event {
	struct tcpstates_transition transition; /* first: the ring buffer record starts with it */
	__u64 skaddr;   /* kernel address of the struct sock: an identity, not a pointer (0: none) */
	__u64 ts_ns;    /* bpf_ktime_get_ns() at the transition (CLOCK_MONOTONIC) */
	struct tcpstates_owner owner; /* not the task on the CPU, which in softirq is anyone */
	__u8 laddr[16]; /* IPv4: first 4 bytes, network byte order */
	__u8 raddr[16];
};

/* What the daemon's ring buffer carries (no trace events): a tuple the programs counted under
 * for the first time, so that user space names its cgroup while the cgroup still exists. */
struct tcpstates_new_tuple {
	struct tcpstates_tuple_key key;
};

/* The owner's task (pid, comm) of a socket, kept for `trace` only. */
struct tcpstates_task {
	__u32 pid;
	char comm[TCPSTATES_COMM_LEN];
};

/* A listener, by network namespace, family and port: how a passively opened child, which the
 * kernel clones without a record, finds its owner. */
struct tcpstates_listener_key {
	__u64 net; /* the struct net's address: an identity */
	__u16 port;
	__u16 ipv6;
	__u32 pad;
};
struct tcpstates_listener {
	__u64 sk; /* the listening socket (several may share a port: the last listen() names it) */
	struct tcpstates_owner owner;
};

/*
 * What a walk of the network namespace's sockets (iter/tcp) finds besides the full sockets,
 * which it records (a socket older than the daemon gets its record and its count there): per
 * family, state and service port, the sockets it could not record (the table full), the
 * timewait sockets (in their substate, TIME_WAIT or FIN_WAIT2, as `ss` reports them) and the
 * request sockets (SYN_RECV), which make no transition; the full sockets whose record's state
 * was not the socket's (a transition missed: corrected); and the ports listened on. Then a sweep
 * of the records (iter/bpf_map_elem) uncounts those of the namespace's sockets two walks did not
 * see: sockets destroyed while the programs missed their last transitions.
 */
struct tcpstates_walk_key {
	__u16 port;
	__u8 ipv6;
	__u8 state;
};
struct tcpstates_walk_totals {
	__u64 sockets;      /* every socket visited */
	__u64 recorded;     /* full sockets the walk gave a record */
	__u64 unrecorded;   /* full sockets without a record (the table full) */
	__u64 corrected;    /* records whose state the walk corrected */
	__u64 swept;        /* records of sockets gone unseen, uncounted by the sweep */
	__u64 deleted;      /* entries of destroyed sockets the sweep deleted */
	__u64 listening_ports[65536 / 64]; /* bit p % 64 of [p / 64]: a listener on port p */
};

/* The oldest full socket a walk found per family, state and service port (the walk's key; the
 * `oldest` map): the earliest entry time of their records (tcpstates_state_oldest_seconds). */
struct tcpstates_walk_oldest {
	__u64 since_ns;      /* the earliest since_ns; UINT64_MAX: no socket */
	__u32 start_unknown; /* sockets among them whose since_ns is a lower bound (START_UNKNOWN) */
	__u32 pad;
};

/*
 * The accept queues and the listeners' drops (bpf/queues.bpf.h), per family and service port
 * (struct tcpstates_walk_key, state 0). A walk sums the queues of the listeners it visits; the
 * drops are a running total: what each listener's sk_drops grew by since it was last read (by a
 * walk, or by the transition program at the listener's close).
 */
struct tcpstates_listen_queue {
	__u64 length; /* connections waiting to be accepted (sk_ack_backlog) */
	__u64 limit;  /* listen()'s backlog, capped by net.core.somaxconn (sk_max_ack_backlog) */
};
/* A listener of the walked namespace: its sk_drops when last added to the running total. */
struct tcpstates_listener_drops {
	__u32 drops;
	__u16 port;   /* its service port (0: none) */
	__u8 ipv6;
	__u8 walked;  /* the generation of the last walk that saw it (or of its listen()) */
};
/*
 * A destination of the walked namespace's connections (remote address and port), with the
 * sockets towards it whose local port is in net.ipv4.ip_local_port_range: the ephemeral ports
 * it uses (bpf/queues.bpf.h).
 */
struct tcpstates_destination_key {
	__u8 addr[16]; /* IPv4: first 4 bytes, network byte order */
	__u16 port;    /* host byte order */
	__u8 ipv6;
	__u8 pad;
};
/* What the last walk could not keep (the tables full): counted, never dropped unsaid. */
struct tcpstates_queue_walk_totals {
	__u64 untracked_listeners; /* listeners whose drops the listener table had no room for */
	__u64 uncounted_sockets;   /* sockets whose destination the table had no room for */
};

/* Records the daemon may list for the next walk's sweep (bpf/walk.bpf.h): of sockets gone
 * unseen, and of destroyed sockets to delete. */
#define TCPSTATES_MAX_STALE_RECORDS 4096
#define TCPSTATES_MAX_DESTROYED_RECORDS 8192

/*
 * Exemplars of tcpstates_state_duration_seconds: the slowest observation of each series, with
 * the connection that made it. The programs keep one per (series, CPU) in a table that user
 * space swaps every second (bpf/exemplars.bpf.h says why that is race-free); user space keeps
 * the slowest over CPUs and seconds until a scrape shows it.
 */
struct tcpstates_exemplar_key {
	__u64 cgroup_id; /* the labelled histogram's key's (0 for the unlabelled slot) */
	__u16 port;      /* likewise */
	__u8 ipv6;
	__u8 from;
	__u8 to;
	__u8 labelled; /* 1: observed in the labelled histogram of this key; 0: the unlabelled slot */
	__u16 cpu;     /* the CPU whose program wrote it: one writer per entry */
};

struct tcpstates_exemplar {
	__u64 duration_ns;
	__u64 at_ns;     /* when (bpf_ktime_get_ns(): CLOCK_MONOTONIC) */
	__u64 cgroup_id; /* the owner's, when the cgroup label is on; else 0 */
	__u8 laddr[16];  /* IPv4: first 4 bytes; network byte order */
	__u8 raddr[16];
	__u16 lport; /* host byte order */
	__u16 rport;
	__u8 ipv6;
	__u8 pad[3];
};

/* The first programs whose recursion marks the nested ones read (bpf/recursion_marks.bpf.h). */
enum tcpstates_first_program {
	TCPSTATES_FIRST_TRANSITION_PROGRAM = 0,
	TCPSTATES_FIRST_DESTROY_PROGRAM,
	TCPSTATES_FIRST_PROGRAMS,
};

/* Indexes into the per-CPU `counters` array map. */
enum tcpstates_counter {
	TCPSTATES_COUNTER_RINGBUF_FULL = 0, /* bpf_ringbuf_reserve failed: a record lost */
	TCPSTATES_COUNTER_PERFBUF_ERROR,    /* perf output failed for a reason other than full */
	TCPSTATES_COUNTER_STATE_FAILED,     /* no record could be stored: table full, or ENOMEM */
	TCPSTATES_COUNTER_STATE_MISMATCH,   /* the record's state was not the transition's old one */
	TCPSTATES_COUNTER_NESTED_HANDLED,   /* transitions the first program missed, the nested one
					     * handled */
	TCPSTATES_COUNTER_TUPLE_OVERFLOW,   /* counts put under the overflow tuple */
	TCPSTATES_COUNTER_DURATION_OVERFLOW, /* observations a labelled histogram had no room for */
	TCPSTATES_COUNTER_GAUGE_LOST,       /* a socket's state change its tuple had no room for */
	TCPSTATES_COUNTER_STRANGE_STATE,    /* a transition from or to a state without a slot */
	TCPSTATES_COUNTER_WALK_RECORD_FAILED, /* the walk found no room in the table */
	TCPSTATES_COUNTER_NESTED_DESTROYED, /* records the first destroy program missed, the nested
					     * one removed */
	TCPSTATES_COUNTER_TUPLE_TABLE_FULL, /* new tuples the table had no room for */
	TCPSTATES_COUNTER_NATIVE_LOST,      /* observations without their native bucket */
	TCPSTATES_COUNTER_EXEMPLAR_TABLE_FULL, /* exemplar candidates the table had no room for */
	TCPSTATES_COUNTER_NO_MEMORY,        /* entries the kernel could not allocate (ENOMEM) */
	TCPSTATES_COUNTER_MAX,
};

/* Upper bound for each port allow-list (source, destination). */
#define TCPSTATES_MAX_FILTER_PORTS 1024

/* The layouts user space reads and docs/architecture.md promises: a change must be deliberate. */
#ifdef __cplusplus
#define TCPSTATES_ASSERT_SIZE(type, bytes) static_assert(sizeof(type) == (bytes), #type)
#else
#define TCPSTATES_ASSERT_SIZE(type, bytes) _Static_assert(sizeof(type) == (bytes), #type)
#endif
TCPSTATES_ASSERT_SIZE(struct tcpstates_socket, 32);
TCPSTATES_ASSERT_SIZE(struct tcpstates_tuple_key, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_tuple_counts, 2432);
TCPSTATES_ASSERT_SIZE(struct tcpstates_histogram, 544);
TCPSTATES_ASSERT_SIZE(struct tcpstates_duration_key, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_native_key, 24);
TCPSTATES_ASSERT_SIZE(struct tcpstates_transition, 32);
TCPSTATES_ASSERT_SIZE(struct tcpstates_event, 112);
TCPSTATES_ASSERT_SIZE(struct tcpstates_listener_key, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_walk_key, 4);
TCPSTATES_ASSERT_SIZE(struct tcpstates_walk_oldest, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_listen_queue, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_listener_drops, 8);
TCPSTATES_ASSERT_SIZE(struct tcpstates_destination_key, 20);
TCPSTATES_ASSERT_SIZE(struct tcpstates_exemplar_key, 16);
TCPSTATES_ASSERT_SIZE(struct tcpstates_exemplar, 64);

#endif

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kernel half of tcpstatesd: programs on the tracepoint sock/inet_sock_set_state, programs on
 * the reset and retransmission tracepoints (tcp:*, "Resets and retransmissions" below), and a
 * walk of the existing sockets that counts them per state.
 *
 * For every TCP state change the program looks up what it stored of the socket (when it
 * entered its previous state, how it was opened, who owns it), stores the new state, keeps
 * the per-state count of the sockets the walk does not see (other network namespaces'),
 * applies the filters user space configured, and emits one record: a struct
 * tcpstates_transition for the daemon's metrics, or a struct tcpstates_event (that transition
 * followed by the socket's addresses and owner) for `trace`.
 *
 * Per-socket state lives in the socket's own storage (BPF_MAP_TYPE_SK_STORAGE): created with
 * the socket's first transition, freed with the socket, no capacity, no shared lock, never
 * confused with a later socket at the same address. The plain raw tracepoint (for kernels
 * without BTF, which cannot use socket storage) keeps it in a bounded hash table instead.
 *
 * Nested transitions: the kernel does not run a program that is already running on the CPU
 * (a softirq's transition interrupting it); it skips and counts the run. So every transition
 * goes to two programs: the first one does the work and marks its CPU busy meanwhile; the
 * nested one does the work only when it finds the mark, i.e. exactly when the first one was
 * interrupted. A transition is lost only when both are busy on its CPU (user space counts
 * first-program misses minus nested runs), or when the kernel calls neither, which it was
 * seen to do, uncounted, when many sockets close at once (docs/performance.md).
 *
 * tp_btf rather than the classic tracepoint: it attaches through bpf_link without tracefs
 * (not mounted on many hosts). Their cost per event measured the same (docs/performance.md).
 */
#include "kernel_types.h"
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "tcpstates.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load: full events (for `trace`) or compact transitions (for
 * the metrics). A load-time constant, so the verifier drops the unused branch. */
const volatile __u8 event_details = 1;

/* Wake the reader only when this many bytes wait in the ring buffer (0: after every
 * event, as the ring buffer does by default). Waking costs the traced CPU a self-IPI, a VM
 * exit on virtual machines: measured at ~2 us per event on this project's test VMs, twenty
 * times the rest of the program. With batching, user space drains on a timer as well. */
const volatile __u64 ringbuf_wakeup_bytes = 0;

/* The network namespace whose sockets the walk counts (its cookie, SO_NETNS_COOKIE): the
 * programs count the sockets of every other one. 0: no walk, they count every socket. */
const volatile __u64 walked_netns_cookie = 0;

/* Filters, written by user space through the skeleton's mmap of .bss. They are read on
 * every event, so a reload changes them without detaching the program. They select the
 * transitions reported, not the sockets counted: the gauge counts every socket. */
volatile __u16 filter_family = 0;     /* 0: every family; else AF_INET or AF_INET6 */
volatile __u8 filter_local_ports = 0; /* 1: only ports present in local_ports */
volatile __u8 filter_remote_ports = 0;

/* BPF_F_CLONE: a listener's record is copied into each child the kernel clones from it,
 * which is how a passively opened socket learns its owner (see track()). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct tcpstates_socket);
} socket_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* sized from the config before load when the raw tracepoint runs */
	__type(key, __u64);
	__type(value, struct tcpstates_socket);
} socket_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCPSTATES_WRITERS * TCPSTATES_SOCKET_COUNT_SLOTS);
	__type(key, __u32);
	__type(value, __s64);
} socket_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_FILTER_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} local_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_FILTER_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} remote_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCPSTATES_WRITERS * TCPSTATES_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Set while the first program runs on a CPU: what the nested program looks for. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
} first_running SEC(".maps");

/*
 * Per CPU: the sockets that last moved to CLOSE on it, what they left and who owned them. When
 * the kernel aborts a connection (close() with unread data, SO_LINGER 0, a listener's close()
 * for the children not yet accepted) it moves the socket to CLOSE first, forgetting its record,
 * then sends the RST in the same call: the reset program finds the socket here and counts the
 * RST in the state it aborted, under its owner. Several, because on loopback the peer handles
 * that RST (and closes) before the sender's tracepoint fires.
 */
#define RECENT_CLOSES 4 /* a power of two */

struct closed_socket {
	__u64 sk;
	struct tcpstates_owner owner;
	__u8 from_state;
	__u8 origin;
};

struct recent_closes {
	struct closed_socket sockets[RECENT_CLOSES];
	__u32 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct recent_closes);
} recent_closes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized from the config before load */
} ring_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

/* Compile-time choices of each entry point, passed down as constants so that each program
 * holds only its own branch. */
enum transport { RING_BUFFER, PERF_BUFFER };
enum state_store { SOCKET_STORAGE, SOCKET_TABLE };

static __always_inline void count(enum tcpstates_writer writer, __u32 counter)
{
	__u32 slot = writer * TCPSTATES_COUNTER_MAX + counter;
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);

	if (!value)
		return;
	/* The first and the nested program each have their per-CPU slot, which nothing else
	 * writes meanwhile. The packet programs share theirs, and one can interrupt another. */
	if (writer == TCPSTATES_WRITER_PACKETS)
		__sync_fetch_and_add(value, 1);
	else
		*value += 1;
}

static __always_inline void add_socket_count(enum tcpstates_writer writer, __u16 family,
					     __u8 state, __s64 delta)
{
	__u32 slot = writer * TCPSTATES_SOCKET_COUNT_SLOTS +
		     tcpstates_socket_count_slot(family == AF_INET6, state);
	__s64 *value = bpf_map_lookup_elem(&socket_counts, &slot);

	if (value)
		*value += delta;
}

static __always_inline struct tcpstates_socket *stored_state(const struct sock *sk,
							     enum state_store store)
{
	__u64 key = (__u64)sk;

	if (store == SOCKET_STORAGE)
		return bpf_sk_storage_get(&socket_storage, (void *)sk, 0, 0);
	return bpf_map_lookup_elem(&socket_table, &key);
}

/* Returns 0 when the socket's state is stored. */
static __always_inline int store_new_state(const struct sock *sk,
					   struct tcpstates_socket *fresh,
					   enum state_store store)
{
	__u64 key = (__u64)sk;

	if (store == SOCKET_STORAGE)
		return bpf_sk_storage_get(&socket_storage, (void *)sk, fresh,
					  BPF_SK_STORAGE_GET_F_CREATE) ? 0 : -1;
	return bpf_map_update_elem(&socket_table, &key, fresh, BPF_NOEXIST) == 0 ? 0 : -1;
}

static __always_inline void forget_state(const struct sock *sk, enum state_store store)
{
	__u64 key = (__u64)sk;

	if (store == SOCKET_STORAGE)
		bpf_sk_storage_delete(&socket_storage, (void *)sk);
	else
		bpf_map_delete_elem(&socket_table, &key);
}

/* Whether the programs count this socket in `socket_counts`: the walk counts those of its own
 * network namespace. */
static __always_inline int counted_here(const struct sock *sk)
{
	return !walked_netns_cookie ||
	       BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie) != walked_netns_cookie;
}

/* The task on the CPU, as the owner of the socket whose connect() or listen() it runs. */
static __always_inline void current_owner(struct tcpstates_owner *owner)
{
	owner->cgroup_id = bpf_get_current_cgroup_id();
	owner->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

/* What a transition says of how the socket was opened (enum tcpstates_origin). */
static __always_inline __u8 origin_of(int old_state, int new_state)
{
	if (old_state == TCPSTATES_CLOSE && new_state == TCPSTATES_SYN_SENT)
		return TCPSTATES_ORIGIN_ACTIVE;
	if (old_state == TCPSTATES_CLOSE && new_state == TCPSTATES_LISTEN)
		return TCPSTATES_ORIGIN_LISTENER;
	if (old_state == TCPSTATES_LISTEN && new_state == TCPSTATES_SYN_RECV)
		return TCPSTATES_ORIGIN_PASSIVE;
	return TCPSTATES_ORIGIN_UNKNOWN;
}

/* A full socket's ports, host byte order. Every read of the socket is a probe read: the raw_tp
 * programs get it as a plain number, and inet_sport lies past struct sock, outside what tp_btf
 * lets a program dereference directly. */
static __always_inline __u16 local_port(const struct sock *sk)
{
	return bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
}

static __always_inline __u16 remote_port(const struct sock *sk)
{
	return bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/* -1 when user space's filters drop the record, else 0. */
static __always_inline int filtered_out(const struct tcpstates_transition *t)
{
	if (filter_family && t->family != filter_family)
		return -1;
	if (filter_local_ports && !bpf_map_lookup_elem(&local_ports, &t->lport))
		return -1;
	if (filter_remote_ports && !bpf_map_lookup_elem(&remote_ports, &t->rport))
		return -1;
	return 0;
}

/*
 * Updates the socket's stored state (and the socket counts, see counted_here()) for this
 * transition, and fills *t and *owner (now: the transition's time). Returns 0 when the
 * transition is to be emitted, -1 when a filter drops it. The filters run last: an active
 * open's first event has local port 0, which must not keep its SYN_SENT start time from being
 * stored.
 *
 * The owner is recorded where the task on the CPU is the socket's: at connect() (CLOSE ->
 * SYN_SENT) and listen() (CLOSE -> LISTEN). A passively opened child's first transition
 * (LISTEN -> SYN_RECV) finds its listener's record in its own storage, copied by the kernel
 * when it cloned the child (BPF_F_CLONE): it keeps the owner and starts the rest anew.
 */
static __always_inline int track(const struct sock *sk, int old_state, int new_state,
				 __u64 now, struct tcpstates_transition *t,
				 struct tcpstates_owner *owner, enum tcpstates_writer writer,
				 enum state_store store)
{
	struct tcpstates_socket *known;
	int counted = counted_here(sk);
	__u8 origin = origin_of(old_state, new_state);
	int child = origin == TCPSTATES_ORIGIN_PASSIVE;

	__builtin_memset(t, 0, sizeof(*t)); /* no stack bytes leave uninitialized */
	__builtin_memset(owner, 0, sizeof(*owner));
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->lport = local_port(sk);
	t->rport = remote_port(sk);
	t->old_state = old_state;
	t->new_state = new_state;

	known = stored_state(sk, store);
	if (known && child && store == SOCKET_TABLE) {
		/* No cloning in the table: an entry at a child's address is a freed socket's. */
		forget_state(sk, store);
		known = 0;
	}
	if (known && !child) {
		if (known->state != old_state) {
			/* A missed transition, or in the table a socket at a freed one's address. */
			count(writer, TCPSTATES_COUNTER_STATE_MISMATCH);
			t->flags = TCPSTATES_EVENT_START_UNKNOWN;
		} else {
			t->duration_ns = now - known->since_ns;
		}
		if (counted)
			add_socket_count(writer, known->family, known->state, -1);
	} else {
		t->flags = TCPSTATES_EVENT_START_UNKNOWN;
	}

	if (new_state == TCPSTATES_CLOSE) {
		if (known) {
			*owner = known->owner;
			t->origin = known->origin;
			forget_state(sk, store);
		}
	} else if (known) {
		if (origin == TCPSTATES_ORIGIN_ACTIVE || origin == TCPSTATES_ORIGIN_LISTENER)
			current_owner(&known->owner);
		if (origin != TCPSTATES_ORIGIN_UNKNOWN)
			known->origin = origin;
		known->since_ns = now;
		known->state = new_state;
		known->family = t->family; /* a table entry's new socket may be of another family */
		*owner = known->owner;
		t->origin = known->origin;
		if (counted)
			add_socket_count(writer, t->family, new_state, 1);
	} else {
		struct tcpstates_socket fresh = {
			.since_ns = now,
			.family = t->family,
			.state = new_state,
			.origin = origin,
		};

		if (origin == TCPSTATES_ORIGIN_ACTIVE || origin == TCPSTATES_ORIGIN_LISTENER)
			current_owner(&fresh.owner);
		*owner = fresh.owner;
		t->origin = origin;
		if (store_new_state(sk, &fresh, store) != 0)
			count(writer, TCPSTATES_COUNTER_STATE_FAILED);
		else if (counted)
			add_socket_count(writer, t->family, new_state, 1);
	}
	t->cgroup_id = owner->cgroup_id;
	if (new_state == TCPSTATES_CLOSE) {
		__u32 zero = 0;
		struct recent_closes *recent = bpf_map_lookup_elem(&recent_closes, &zero);
		int error = BPF_CORE_READ(sk, sk_err);

		/* Set before the move to CLOSE on refused, timed-out, reset and unreachable
		 * connections (docs/metrics.md, "Close reasons"). An ICMP error that reached a
		 * connecting socket while its connect() held it is only the soft error: the
		 * application then sees it and closes the socket itself. Errnos fit a byte. */
		if (!error && old_state == TCPSTATES_SYN_SENT)
			error = BPF_CORE_READ(sk, sk_err_soft);
		t->close_error = error > 0 && error < 256 ? error : 0;
		if (recent) {
			struct closed_socket *closed =
				&recent->sockets[recent->next++ & (RECENT_CLOSES - 1)];

			closed->sk = (__u64)sk;
			closed->owner = *owner;
			closed->from_state = old_state;
			closed->origin = t->origin;
		}
	}
	return filtered_out(t);
}

/* The addresses of the segment a RST answers when it found no socket, seen from our side:
 * its destination is the local address. */
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

/* The full event: the record, then who and where: the socket's addresses, or without a
 * socket the segment's. */
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

/* Submit flags for a record of `size` bytes just reserved: one forced wake-up when the
 * waiting data crosses the threshold, none otherwise (see ringbuf_wakeup_bytes). */
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

static __always_inline int is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline void output_ringbuf(const struct sock *sk,
					   const struct sk_buff *segment, __u64 now,
					   const struct tcpstates_transition *t,
					   const struct tcpstates_owner *owner,
					   enum tcpstates_writer writer)
{
	if (event_details) {
		struct tcpstates_event *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);

		if (!e) {
			count(writer, TCPSTATES_COUNTER_RINGBUF_FULL);
			return;
		}
		fill_event(sk, segment, now, t, owner, e);
		bpf_ringbuf_submit(e, ringbuf_submit_flags(sizeof(*e)));
	} else {
		struct tcpstates_transition *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);

		if (!e) {
			count(writer, TCPSTATES_COUNTER_RINGBUF_FULL);
			return;
		}
		*e = *t;
		bpf_ringbuf_submit(e, ringbuf_submit_flags(sizeof(*e)));
	}
}

static __always_inline void output_perfbuf(void *ctx, const struct sock *sk,
					   const struct sk_buff *segment, __u64 now,
					   const struct tcpstates_transition *t,
					   const struct tcpstates_owner *owner,
					   enum tcpstates_writer writer)
{
	long err;

	if (event_details) {
		struct tcpstates_event e;

		fill_event(sk, segment, now, t, owner, &e);
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	} else {
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, (void *)t,
					    sizeof(*t));
	}
	/* -ENOSPC (buffer full) reaches user space as a lost-sample record; count the rest. */
	if (err && err != -28)
		count(writer, TCPSTATES_COUNTER_PERFBUF_ERROR);
}

static __always_inline void output(void *ctx, const struct sock *sk,
				   const struct sk_buff *segment, __u64 now,
				   const struct tcpstates_transition *t,
				   const struct tcpstates_owner *owner, enum tcpstates_writer writer,
				   enum transport transport)
{
	if (transport == RING_BUFFER)
		output_ringbuf(sk, segment, now, t, owner, writer);
	else
		output_perfbuf(ctx, sk, segment, now, t, owner, writer);
}

static __always_inline void handle(void *ctx, const struct sock *sk, int old_state,
				   int new_state, enum tcpstates_writer writer,
				   enum transport transport, enum state_store store)
{
	__u64 now = bpf_ktime_get_ns();
	struct tcpstates_transition t;
	struct tcpstates_owner owner;

	if (!is_tcp(sk) || track(sk, old_state, new_state, now, &t, &owner, writer, store) != 0)
		return;
	output(ctx, sk, 0, now, &t, &owner, writer, transport);
}

/* One transition as seen by the first or the nested program (see the top of this file). */
static __always_inline int run(void *ctx, const struct sock *sk, int old_state, int new_state,
			       enum tcpstates_writer writer, enum transport transport,
			       enum state_store store)
{
	__u32 zero = 0;
	__u8 *busy = bpf_map_lookup_elem(&first_running, &zero);

	if (!busy)
		return 0;
	if (writer == TCPSTATES_WRITER_NESTED) {
		if (!*busy)
			return 0; /* the first program is handling (or has handled) this one */
		count(writer, TCPSTATES_COUNTER_NESTED_RUNS);
		handle(ctx, sk, old_state, new_state, writer, transport, store);
		return 0;
	}
	*busy = 1;
	handle(ctx, sk, old_state, new_state, writer, transport, store);
	*busy = 0;
	return 0;
}

/*
 * The entry points, a first and a nested program for each transport and attach type; user
 * space loads one pair. The BTF raw tracepoint is the default; the plain raw tracepoint is for
 * kernels without BTF (events.btf_path): attaching it needs no kernel BTF, its field reads
 * are relocated against the BTF file given instead, and it keeps socket state in the table.
 */
#define ENTRY_POINTS(name, section, transport, store)                                        \
	SEC(section)                                                                          \
	int BPF_PROG(name, const struct sock *sk, int old_state, int new_state)                \
	{                                                                                     \
		return run(ctx, sk, old_state, new_state, TCPSTATES_WRITER_FIRST, transport,  \
			   store);                                                            \
	}                                                                                     \
	SEC(section)                                                                          \
	int BPF_PROG(name##_nested, const struct sock *sk, int old_state, int new_state)       \
	{                                                                                     \
		return run(ctx, sk, old_state, new_state, TCPSTATES_WRITER_NESTED, transport, \
			   store);                                                            \
	}

ENTRY_POINTS(tcpstates_ringbuf, "tp_btf/inet_sock_set_state", RING_BUFFER, SOCKET_STORAGE)
ENTRY_POINTS(tcpstates_perfbuf, "tp_btf/inet_sock_set_state", PERF_BUFFER, SOCKET_STORAGE)
ENTRY_POINTS(tcpstates_ringbuf_raw, "raw_tp/inet_sock_set_state", RING_BUFFER, SOCKET_TABLE)
ENTRY_POINTS(tcpstates_perfbuf_raw, "raw_tp/inet_sock_set_state", PERF_BUFFER, SOCKET_TABLE)

/*
 * Resets and retransmissions (tracepoints tcp:tcp_send_reset, tcp_receive_reset,
 * tcp_retransmit_skb, tcp_retransmit_synack). Each is reported in the socket's state at that
 * moment, with the owner and origin its record holds; the filters apply as to transitions. They
 * keep no state of their own. The kernel skips one of these programs when it is already running
 * on the CPU, as it does the transition programs; user space counts those misses as losses.
 */
#define ETH_P_IPV6 0x86DD

/* Set by user space before load: whether tcp_retransmit_skb passes the transmission's result
 * (Linux >= 6.15 also fires it for failed attempts, which retransmitted nothing). */
const volatile __u8 retransmit_reports_errors = 0;

/* `closed`: the socket just closed (see recent_closes), whose record is gone; else its record
 * is looked up. */
static __always_inline void report_packet(void *ctx, const struct sock *sk,
					  const struct sk_buff *segment, __u8 kind, __u8 state,
					  __u16 family, __u16 lport, __u16 rport,
					  const struct closed_socket *closed, enum transport transport)
{
	struct tcpstates_socket *known = 0;
	struct tcpstates_transition t;
	struct tcpstates_owner owner;

	__builtin_memset(&t, 0, sizeof(t));
	__builtin_memset(&owner, 0, sizeof(owner));
	t.kind = kind;
	t.family = family;
	t.lport = lport;
	t.rport = rport;
	t.old_state = state;
	t.new_state = state;
	if (closed) {
		owner = closed->owner;
		t.origin = closed->origin;
	} else if (sk) { /* a socket that is not a full one (timewait, request) has none */
		known = bpf_sk_storage_get(&socket_storage, (void *)sk, 0, 0);
	}
	if (known) {
		owner = known->owner;
		t.origin = known->origin;
		/* A listener's record, for one of its handshakes: what its child will be. */
		if (t.origin == TCPSTATES_ORIGIN_LISTENER && state != TCPSTATES_LISTEN)
			t.origin = TCPSTATES_ORIGIN_PASSIVE;
	}
	t.cgroup_id = owner.cgroup_id;
	if (filtered_out(&t) != 0)
		return;
	output(ctx, sk, segment, bpf_ktime_get_ns(), &t, &owner, TCPSTATES_WRITER_PACKETS,
	       transport);
}

/* An aborted socket among those that just closed on this CPU (see recent_closes), or NULL. A
 * socket aborted by data arriving after its close() sends its RST with that segment. Newest
 * first: an older entry at the same address is a freed socket's, whose memory this one reuses. */
static __always_inline const struct closed_socket *just_closed(const struct sock *sk)
{
	__u32 zero = 0;
	struct recent_closes *recent = bpf_map_lookup_elem(&recent_closes, &zero);

	if (!recent)
		return 0;
	for (__u32 age = 1; age <= RECENT_CLOSES; age++) {
		struct closed_socket *closed =
			&recent->sockets[(recent->next - age) & (RECENT_CLOSES - 1)];

		if (closed->sk == (__u64)sk)
			return closed;
	}
	return 0;
}

/* The state a RST was sent in: CLOSE without a socket (RFC 793's CLOSED: no connection). */
static __always_inline int reset_sent(void *ctx, const struct sock *sk,
				      const struct sk_buff *segment, enum transport transport)
{
	const struct closed_socket *closed = 0;
	__u16 family, lport, rport;
	__u8 state;

	if (segment) {
		/* In answer to a segment (with or without a socket): its ports, from our side. */
		unsigned char *tcp = BPF_CORE_READ(segment, head) +
				     BPF_CORE_READ(segment, transport_header);
		__be16 ports[2] = {};

		bpf_probe_read_kernel(ports, sizeof(ports), tcp);
		rport = bpf_ntohs(ports[0]);
		lport = bpf_ntohs(ports[1]);
		family = bpf_ntohs(BPF_CORE_READ(segment, protocol)) == ETH_P_IPV6 ? AF_INET6
										    : AF_INET;
	} else if (sk) {
		/* An abort, from the socket (a full one) alone. */
		lport = local_port(sk);
		rport = remote_port(sk);
	} else {
		return 0;
	}
	if (!sk) {
		state = TCPSTATES_CLOSE;
	} else {
		/* an IPv4 peer of an IPv6 socket: the socket's family, as in its transitions */
		family = BPF_CORE_READ(sk, __sk_common.skc_family);
		state = BPF_CORE_READ(sk, __sk_common.skc_state);
		if (state == TCPSTATES_NEW_SYN_RECV)
			state = TCPSTATES_SYN_RECV; /* a request's handshake */
		else if (state == TCPSTATES_CLOSE && (closed = just_closed(sk)))
			state = closed->from_state; /* an abort: the state it aborted */
	}
	report_packet(ctx, sk, segment, TCPSTATES_KIND_RESET_SENT, state, family, lport, rport,
		      closed, transport);
	return 0;
}

/* A full socket's own state and ports. */
static __always_inline void report_socket(void *ctx, const struct sock *sk, __u8 kind,
					  enum transport transport)
{
	report_packet(ctx, sk, 0, kind, BPF_CORE_READ(sk, __sk_common.skc_state),
		      BPF_CORE_READ(sk, __sk_common.skc_family), local_port(sk), remote_port(sk), 0,
		      transport);
}

/* A listener's SYN-ACK sent again: the handshake of a request socket, reported as SYN_RECV
 * with the request's ports and the listener's owner. */
static __always_inline void report_synack(void *ctx, const struct sock *listener,
					  const struct request_sock *req, enum transport transport)
{
	report_packet(ctx, listener, 0, TCPSTATES_KIND_RETRANSMIT, TCPSTATES_SYN_RECV,
		      BPF_CORE_READ(req, __req_common.skc_family),
		      BPF_CORE_READ(req, __req_common.skc_num),
		      bpf_ntohs(BPF_CORE_READ(req, __req_common.skc_dport)), 0, transport);
}

#define PACKET_ENTRY_POINTS(suffix, transport)                                                 \
	SEC("tp_btf/tcp_send_reset")                                                            \
	int BPF_PROG(tcpstates_reset_sent##suffix, const struct sock *sk,                       \
		     const struct sk_buff *skb)                                                 \
	{                                                                                       \
		return reset_sent(ctx, sk, skb, transport);                                     \
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

PACKET_ENTRY_POINTS(_ringbuf, RING_BUFFER)
PACKET_ENTRY_POINTS(_perfbuf, PERF_BUFFER)

/*
 * The walk of every TCP socket of the caller's network namespace (iter/tcp), run by the daemon
 * at start and at each scrape: it counts each socket in the state `ss` reports, timewait and
 * request sockets included (they make no transition the tracepoint sees), notes the ports
 * listened on, and once it has visited them all (a last call without a socket) writes the
 * counts to the iterator's output. The counts live in .bss across the calls of one walk: user
 * space zeroes them before each walk, and runs one walk at a time.
 *
 * A detailed walk (walk_details, set by user space when the gauge has labels) also writes a
 * struct tcpstates_walked_socket per socket, with its owner and origin where it has a record.
 */
struct tcpstates_walk_counts walk_counts = {};
volatile __u8 walk_details = 0;

static __always_inline void write_walked(struct seq_file *seq, __u16 family, __u16 lport,
					 __u16 rport, __u8 state,
					 const struct tcpstates_socket *known, __u8 origin)
{
	struct tcpstates_walked_socket walked = {
		.family = family,
		.lport = lport,
		.rport = rport,
		.state = state,
		.origin = origin,
	};

	if (known) {
		walked.cgroup_id = known->owner.cgroup_id;
		walked.origin = known->origin;
	}
	bpf_seq_write(seq, &walked, sizeof(walked));
}

SEC("iter/tcp")
int tcpstates_walk(struct bpf_iter__tcp *ctx)
{
	struct sock_common *common = ctx->sk_common;
	struct tcpstates_socket *known = 0;
	__u8 origin = TCPSTATES_ORIGIN_UNKNOWN;
	__u32 slot;
	__u8 state;

	if (!common) {
		bpf_seq_write(ctx->meta->seq, &walk_counts, sizeof(walk_counts));
		return 0;
	}
	state = common->skc_state;
	if (state == TCPSTATES_TIME_WAIT) {
		struct tcp_timewait_sock *timewait = bpf_skc_to_tcp_timewait_sock(common);

		if (!timewait)
			return 0;
		state = timewait->tw_sk.tw_substate;
	} else if (state == TCPSTATES_NEW_SYN_RECV) {
		state = TCPSTATES_SYN_RECV;
		origin = TCPSTATES_ORIGIN_PASSIVE; /* a request to a listener */
	} else if (walk_details) {
		struct tcp_sock *full = bpf_skc_to_tcp_sock(common);

		if (full)
			known = bpf_sk_storage_get(&socket_storage, (struct sock *)full, 0, 0);
	}
	slot = tcpstates_socket_count_slot(common->skc_family == AF_INET6, state);
	barrier_var(slot); /* keep the bound check, which the compiler knows to be true */
	if (slot < TCPSTATES_SOCKET_COUNT_SLOTS)
		walk_counts.sockets[slot] += 1;
	if (state == TCPSTATES_LISTEN) {
		__u16 port = common->skc_num;

		walk_counts.listening_ports[port / 64] |= 1ULL << (port % 64);
	}
	if (walk_details)
		write_walked(ctx->meta->seq, common->skc_family, common->skc_num,
			     bpf_ntohs(common->skc_dport), state, known, origin);
	return 0;
}

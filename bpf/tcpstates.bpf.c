// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kernel half of tcpstatesd: one BTF-enabled raw tracepoint on sock/inet_sock_set_state.
 *
 * For every TCP state change it looks the socket up in an LRU socket table to learn when
 * the socket entered its previous state, updates the table, applies the filters user space
 * configured, and emits one record: a struct tcpstates_transition for the daemon's metrics,
 * or a struct tcpstates_event (that transition followed by the socket's addresses, pid and
 * comm) for `trace`. Two entry points share that logic and differ only in transport (ring
 * buffer or perf buffer); user space loads exactly one.
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

/* Filters, written by user space through the skeleton's mmap of .data. They are read on
 * every event, so a reload changes them without detaching the program. */
volatile __u16 filter_family = 0;     /* 0: every family; else AF_INET or AF_INET6 */
volatile __u8 filter_local_ports = 0; /* 1: only ports present in local_ports */
volatile __u8 filter_remote_ports = 0;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized from the config before load */
	__type(key, __u64);
	__type(value, struct tcpstates_socket);
} sockets SEC(".maps");

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
	__uint(max_entries, TCPSTATES_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized from the config before load */
} ring_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += 1; /* per-CPU slot: no atomics needed */
}

/*
 * Updates the socket table for this transition and fills *t (now: the transition's time).
 * Returns 0 when the transition is to be emitted, -1 when a filter drops it. The table is
 * updated before the port filters run: an active open's first event has local port 0, and a
 * filter on the local port must not stop its SYN_SENT start time from being recorded.
 */
static __always_inline int track(const struct sock *sk, int old_state, int new_state,
				 __u64 now, struct tcpstates_transition *t)
{
	__u64 key = (__u64)sk;
	struct tcpstates_socket *known;

	__builtin_memset(t, 0, sizeof(*t)); /* no stack bytes leave uninitialized */
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (filter_family && t->family != filter_family)
		return -1;
	/* Every read of the socket is a probe read: the raw_tp programs get it as a plain
	 * number, and inet_sport lies past struct sock, outside what tp_btf lets a program
	 * dereference directly. */
	t->lport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->old_state = old_state;
	t->new_state = new_state;

	known = bpf_map_lookup_elem(&sockets, &key);
	if (known && known->state != old_state) {
		/* Same address, different life: a CLOSE we never saw. Its time is meaningless. */
		count(TCPSTATES_COUNTER_TABLE_STALE);
		t->flags = TCPSTATES_EVENT_START_UNKNOWN;
	} else if (known) {
		t->duration_ns = now - known->since_ns;
	} else {
		t->flags = TCPSTATES_EVENT_START_UNKNOWN;
	}

	if (new_state == TCPSTATES_CLOSE) {
		if (known && bpf_map_delete_elem(&sockets, &key) == 0)
			count(TCPSTATES_COUNTER_TABLE_DELETE);
	} else if (known) {
		known->since_ns = now;
		known->state = new_state;
		known->family = t->family; /* a stale entry's new life may be of another family */
		known->lport = t->lport;
		known->rport = t->rport;
	} else {
		struct tcpstates_socket fresh = {
			.since_ns = now,
			.family = t->family,
			.lport = t->lport,
			.rport = t->rport,
			.state = new_state,
		};

		if (bpf_map_update_elem(&sockets, &key, &fresh, BPF_ANY) == 0)
			count(TCPSTATES_COUNTER_TABLE_INSERT);
		else
			count(TCPSTATES_COUNTER_TABLE_INSERT_FAILED);
	}

	if (filter_local_ports && !bpf_map_lookup_elem(&local_ports, &t->lport))
		return -1;
	if (filter_remote_ports && !bpf_map_lookup_elem(&remote_ports, &t->rport))
		return -1;
	return 0;
}

/* The full event: the transition, then who and where. */
static __always_inline void fill_event(const struct sock *sk, __u64 now,
				       const struct tcpstates_transition *t,
				       struct tcpstates_event *e)
{
	e->transition = *t;
	e->skaddr = (__u64)sk;
	e->ts_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	if (t->family == AF_INET) {
		__builtin_memset(e->laddr, 0, sizeof(e->laddr));
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		bpf_core_read(e->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
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

static __always_inline int emit_ringbuf(const struct sock *sk, int old_state, int new_state)
{
	__u64 now = bpf_ktime_get_ns();
	struct tcpstates_transition t;

	if (!is_tcp(sk) || track(sk, old_state, new_state, now, &t) != 0)
		return 0;
	if (event_details) {
		struct tcpstates_event *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);

		if (!e) {
			count(TCPSTATES_COUNTER_RINGBUF_FULL);
			return 0;
		}
		fill_event(sk, now, &t, e);
		bpf_ringbuf_submit(e, ringbuf_submit_flags(sizeof(*e)));
	} else {
		struct tcpstates_transition *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);

		if (!e) {
			count(TCPSTATES_COUNTER_RINGBUF_FULL);
			return 0;
		}
		*e = t;
		bpf_ringbuf_submit(e, ringbuf_submit_flags(sizeof(*e)));
	}
	return 0;
}

static __always_inline int emit_perfbuf(void *ctx, const struct sock *sk, int old_state,
					int new_state)
{
	__u64 now = bpf_ktime_get_ns();
	struct tcpstates_transition t;
	long err;

	if (!is_tcp(sk) || track(sk, old_state, new_state, now, &t) != 0)
		return 0;
	if (event_details) {
		struct tcpstates_event e;

		fill_event(sk, now, &t, &e);
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	} else {
		err = bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &t, sizeof(t));
	}
	/* -ENOSPC (buffer full) reaches user space as a lost-sample record; count the rest. */
	if (err && err != -28)
		count(TCPSTATES_COUNTER_PERFBUF_ERROR);
	return 0;
}

/*
 * One program per transport and per attach type; user space loads one of the four. The
 * BTF raw tracepoint is the default; the plain raw tracepoint is for kernels without BTF
 * (events.btf_path): attaching it needs no kernel BTF, and its field reads are relocated
 * against the BTF file given instead.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcpstates_ringbuf, const struct sock *sk, int old_state, int new_state)
{
	(void)ctx; /* BPF_PROG's raw context: only the perf buffer helper needs it */
	return emit_ringbuf(sk, old_state, new_state);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcpstates_perfbuf, const struct sock *sk, int old_state, int new_state)
{
	return emit_perfbuf(ctx, sk, old_state, new_state);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcpstates_ringbuf_raw, const struct sock *sk, int old_state, int new_state)
{
	(void)ctx;
	return emit_ringbuf(sk, old_state, new_state);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tcpstates_perfbuf_raw, const struct sock *sk, int old_state, int new_state)
{
	return emit_perfbuf(ctx, sk, old_state, new_state);
}

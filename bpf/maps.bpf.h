/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps and the settings the programs share, and the small helpers every part uses. Sizes
 * marked "sized" are set by user space before load (daemon/kernel/bpf_program.cpp); settings in
 * .bss are written by user space while the programs run.
 */
#ifndef TCPSTATESD_BPF_MAPS_BPF_H
#define TCPSTATESD_BPF_MAPS_BPF_H

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
#define E2BIG 7
#define ENOMEM 12
#define EEXIST 17
#define ENOSPC 28

/* --- Load-time settings (.rodata): the verifier drops the branches they switch off. --- */

/* Trace events (addresses, owner task, timestamp: what `trace` prints) through the buffer, or
 * counts in the maps below (the daemon). */
const volatile __u8 event_details = 1;

/* Wake the reader only when this many bytes wait in the ring buffer (0: after every event, as
 * the ring buffer does by default). Waking costs the traced CPU a self-IPI, a VM exit on
 * virtual machines (~2 us per event measured on this project's test VMs). With batching, user
 * space drains on a timer as well. */
const volatile __u64 ringbuf_wakeup_bytes = 0;

/* Whether a destroyed socket's record stays until a new socket at its address takes it over or
 * the walk's sweep deletes it (bpf/records.bpf.h, forget_socket()): the daemon's, when it walks
 * the sockets. */
const volatile __u8 keep_destroyed_records = 0;

/* Whether tcp:tcp_retransmit_skb passes the transmission's result (Linux >= 6.15 also fires it
 * for failed attempts, which retransmitted nothing). */
const volatile __u8 retransmit_reports_errors = 0;

/* Whether tcp:tcp_send_reset passes the reset's reason, enum sk_rst_reason (Linux >= 6.10). */
const volatile __u8 reset_reports_reason = 0;

/* --- Live settings (.bss), written by user space. --- */

/* Filters: they select the transitions, resets and retransmissions counted or traced, not the
 * sockets counted by tcpstates_sockets. */
volatile __u16 filter_family = 0;     /* 0: every family; else AF_INET or AF_INET6 */
volatile __u8 filter_local_ports = 0; /* 1: only ports present in local_ports */
volatile __u8 filter_remote_ports = 0;

/* Which labels a new tuple carries: a label no metric family carries is left 0, so that it does
 * not split the counts into tuples for nothing. */
volatile __u8 label_port = 0;
volatile __u8 label_cgroup = 0;
/* Whether durations carry them: their histograms are keyed in `labelled_durations`. */
volatile __u8 duration_label_port = 0;
volatile __u8 duration_label_cgroup = 0;
/* Whether handshake RTTs carry them: their histograms are keyed in `duration_tables` too. */
volatile __u8 handshake_rtt_label_port = 0;
volatile __u8 handshake_rtt_label_cgroup = 0;
/* labels.port.ports contains "listening": every port listened on is a service port, found by
 * the programs at listen() and by the walk (bits set in service_ports). */
volatile __u8 port_listening = 0;
/* The service ports: bit p % 64 of service_ports[p / 64]. */
__u64 service_ports[65536 / 64] = {};

/* The walk being run (struct tcpstates_socket's `walked`), counted up by user space. */
volatile __u8 walk_generation = 0;
/* The walked network namespace (a visited socket's): the sweep's, and the namespace whose
 * listeners' drops are followed (bpf/queues.bpf.h). 0 until a socket is seen. Written by the
 * walk. */
__u64 walked_net = 0;

/* Whether the duration observations offer exemplars (metrics.exemplars). */
volatile __u8 exemplars = 0;
/* The exemplar tables' generation, counted up by user space after each swap of them. */
volatile __u32 exemplar_generation = 0;

/* The duration buckets, two generations (struct tcpstates_bucket_bounds). */
volatile __u32 bucket_generation = 0;
struct tcpstates_bucket_bounds bucket_bounds[2] = {};
/* The handshake RTT buckets, in the same generations. */
struct tcpstates_bucket_bounds handshake_rtt_bounds[2] = {};
/* The native buckets' bounds (durations and handshake RTTs), in the same generations. */
struct tcpstates_native_bounds native_bounds[2] = {};

/* --- Per-socket state --- */

/* One record per socket seen, from its first transition until the kernel destroys it. Sized:
 * events.socket_table_size. Allocated as used (BPF_F_NO_PREALLOC) with the kernel's BTF;
 * preallocated for the raw tracepoint, which older kernels require. The memory is the daemon's
 * (charged to its memory cgroup): nothing is charged to the socket, and a full table, or a
 * record the kernel cannot allocate, costs the daemon its record, never the host its
 * connection. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct tcpstates_socket);
} socket_records SEC(".maps");

/* The owner's pid and comm, for `trace` only (sized to the record table then, else 1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct tcpstates_task);
} socket_tasks SEC(".maps");

/* The listeners by namespace, family and port (struct tcpstates_listener_key). */
#define TCPSTATES_MAX_LISTENERS 16384
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_LISTENERS);
	__type(key, struct tcpstates_listener_key);
	__type(value, struct tcpstates_listener);
} listeners SEC(".maps");

/* --- Counts --- */

/* The tuple table in use: slot 0 holds it. User space swaps in a fresh table to fold the old
 * one's counts into its own totals; the swap returns once no program uses the old table
 * (map-in-map updates wait for running programs), so no increment is lost. */
/* Sizes rather than types: the types would reach BTF only as forward declarations (no global
 * or function signature has them), which libbpf cannot size. */
struct tuple_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct tcpstates_tuple_key));
	__uint(value_size, sizeof(struct tcpstates_tuple_counts));
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct tuple_table);
} tuple_tables SEC(".maps");

/* Histograms without labels (see tcpstates_duration_slot()). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCPSTATES_DURATION_SLOTS);
	__type(key, __u32);
	__type(value, struct tcpstates_histogram);
} durations SEC(".maps");

/* Labelled histograms: a table swapped like the tuple table. */
struct duration_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct tcpstates_duration_key));
	__uint(value_size, sizeof(struct tcpstates_histogram));
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct duration_table);
} duration_tables SEC(".maps");

/* Native buckets (struct tcpstates_native_key): a table swapped with the duration table. */
struct native_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct tcpstates_native_key));
	__uint(value_size, sizeof(__u64));
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct native_table);
} native_tables SEC(".maps");

/* Exemplar candidates (bpf/exemplars.bpf.h): a table swapped like the tuple table. */
struct exemplar_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct tcpstates_exemplar_key));
	__uint(value_size, sizeof(struct tcpstates_exemplar));
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct exemplar_table);
} exemplar_tables SEC(".maps");

/* Handshake RTTs without labels (see tcpstates_handshake_rtt_slot()). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCPSTATES_HANDSHAKE_RTT_SLOTS);
	__type(key, __u32);
	__type(value, struct tcpstates_histogram);
} handshake_rtts SEC(".maps");

/* Completed handshakes without an RTT sample, per family (0: IPv4, 1: IPv6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} handshake_rtt_unmeasured SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCPSTATES_UNKNOWN_START_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} unknown_starts SEC(".maps");

/* The programs' own counters (enum tcpstates_counter), per CPU. Atomic adds: a program
 * interrupted on its CPU by another (or, before Linux 6.1, by itself) must not lose one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCPSTATES_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* --- Filters --- */

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

/* --- To user space --- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* sized */
} ring_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

/* Compile-time choices of each entry point, passed down as constants so that each program
 * holds only its own branch. */
enum transport { RING_BUFFER, PERF_BUFFER };

/* How a program reads the socket it was given: directly where it holds a BTF pointer (tp_btf,
 * the walk), a plain load; with a probe read (a helper call) where it holds a plain number (the
 * raw tracepoint of kernels without BTF, an argument that may be NULL). */
enum access { DIRECT, PROBED };

#define SK_READ(access, sk, field) ((access) == DIRECT ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		__sync_fetch_and_add(value, 1);
}

/* bpf_map_update_elem() for the tables allocated as used: an entry the kernel could not allocate
 * (the daemon's memory cgroup at its limit, or the host short of memory) is counted here, so that
 * it is not taken for a full table, whose remedy differs. What was lost, the caller counts. */
static __always_inline long update_entry(void *map, const void *key, const void *value,
					 __u64 flags)
{
	long error = bpf_map_update_elem(map, key, value, flags);

	if (error == -ENOMEM)
		count(TCPSTATES_COUNTER_NO_MEMORY);
	return error;
}

/* A tracepoint argument that may be NULL, as a plain number: on about Linux 6.6 to 6.12 the
 * verifier took tp_btf pointer arguments for non-NULL and dropped the programs' NULL checks on
 * them (6.13: raw_tp_null_args). A value read with a probe read is a number it knows nothing of. */
static __always_inline __u64 nullable_arg(const unsigned long long *ctx, int index)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), &ctx[index]);
	return value;
}

/* An index into an array of `slots`, out of range slot 0. In assembly so that the register
 * compared is the register used: the compiler may otherwise test one copy of the value and
 * index with another, whose bounds the verifier does not know. */
#define bounded(index, slots)                                                               \
	({                                                                                  \
		__u64 __index = (index);                                                    \
		asm volatile("if %[i] < %[n] goto +1; %[i] = 0;"                            \
			     : [i] "+r"(__index)                                            \
			     : [n] "i"(slots));                                             \
		__index;                                                                    \
	})

static __always_inline __u32 state_slot(__u32 state)
{
	return bounded(state, TCPSTATES_STATE_SLOTS);
}

static __always_inline int is_ipv6(__u16 family)
{
	return family == AF_INET6;
}

#endif

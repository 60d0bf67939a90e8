// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The smallest counter of sock:inet_sock_set_state: hits per program, family and (old, new)
 * state, atomic adds in one array. Nothing else, so that a count it misses is the kernel's,
 * not a program's logic. Three programs, attached as the loader is told:
 *   first, second  tp_btf, like the daemon's first and nested programs (two on the tracepoint)
 *   raw            raw_tp, the attach type of kernels without BTF
 *   classic        the classic tracepoint (tracefs): the path of perf and of bpftrace's
 *                  tracepoint probes, which runs BPF from perf's handler
 * Only the storm's sockets are counted (TCP, local port in [port_low, port_high]): the
 * tracepoint sees every network namespace, and other jobs' traffic would blur the comparison
 * with perf's count under the same filter.
 */
#include "kernel_types.h"

#include <linux/bpf.h>

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "counter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u16 port_low = 0;
const volatile __u16 port_high = 65535;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STORM_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* Every run of each program, before it reads anything: compared with perf's unfiltered count,
 * it tells a hit the program was not run for from one its filter left out. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STORM_PROGRAMS);
	__type(key, __u32);
	__type(value, __u64);
} entered SEC(".maps");

static __always_inline void count(int program, int ipv6, int protocol, __u16 port, int old_state,
				  int new_state)
{
	__u32 slot = program;
	__u64 *hit = bpf_map_lookup_elem(&entered, &slot);

	if (hit)
		__sync_fetch_and_add(hit, 1);
	if (protocol != IPPROTO_TCP || port < port_low || port > port_high)
		return;
	slot = storm_slot(program, ipv6, old_state, new_state);
	hit = bpf_map_lookup_elem(&hits, &slot);
	if (hit)
		__sync_fetch_and_add(hit, 1);
}

static __always_inline void count_socket(int program, const struct sock *sk, int old_state,
					 int new_state)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	count(program, BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6,
	      BPF_CORE_READ(sk, sk_protocol), bpf_ntohs(BPF_CORE_READ(inet, inet_sport)), old_state,
	      new_state);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(first, const struct sock *sk, int old_state, int new_state)
{
	(void)ctx;
	count_socket(STORM_FIRST, sk, old_state, new_state);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(second, const struct sock *sk, int old_state, int new_state)
{
	(void)ctx;
	count_socket(STORM_SECOND, sk, old_state, new_state);
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(raw, const struct sock *sk, int old_state, int new_state)
{
	(void)ctx;
	count_socket(STORM_RAW, sk, old_state, new_state);
	return 0;
}

/* The classic tracepoint's record (events/sock/inet_sock_set_state/format), up to what is read. */
struct inet_sock_set_state_record {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
};

SEC("tracepoint/sock/inet_sock_set_state")
int classic(const struct inet_sock_set_state_record *record)
{
	count(STORM_CLASSIC, record->family == AF_INET6, record->protocol, record->sport,
	      record->oldstate, record->newstate);
	return 1; /* 0 would withhold the hit from perf's own events on this tracepoint */
}

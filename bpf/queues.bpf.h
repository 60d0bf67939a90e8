/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the walk (walk.bpf.h) finds of the queues: the listeners' accept queues and drops per
 * family and service port, and the ephemeral ports in use towards each destination. Only the
 * walked network namespace's sockets (the daemon's).
 *
 * Drops: tcp_listendrop() adds one to the listener's sk_drops and to the namespace's
 * LINUX_MIB_LISTENDROPS (TcpExtListenDrops) together. The walk adds what each listener's
 * sk_drops grew by since it last read it to `listen_drops`; at the listener's LISTEN -> CLOSE
 * the transition program adds the rest and forgets it, so no drop between the last walk and the
 * close is lost. Both run under the listener's lock (iter/tcp locks each socket; the close is a
 * close() under lock_sock), so they never read one listener at the same time. sk_drops counts
 * more than ListenDrops in a few cases, docs/metrics.md says which.
 */
#ifndef TCPSTATESD_BPF_QUEUES_BPF_H
#define TCPSTATESD_BPF_QUEUES_BPF_H

#include "records.bpf.h"

/* Every family and port has room: no key is ever refused. Allocated as used. */
#define TCPSTATES_PORT_KEYS (2 * 65536)
#define TCPSTATES_MAX_DESTINATIONS 16384

/* Per family and service port (state 0): the last walk's listeners' queues summed. User space
 * clears it before each walk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_PORT_KEYS);
	__type(key, struct tcpstates_walk_key);
	__type(value, struct tcpstates_listen_queue);
} listen_queues SEC(".maps");

/* Per family and service port (state 0): drops of the walked namespace's listeners since the
 * daemon started following them. Never cleared. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_PORT_KEYS);
	__type(key, struct tcpstates_walk_key);
	__type(value, __u64);
} listen_drops SEC(".maps");

/* The listeners followed, by socket address. User space removes those two walks did not see
 * (destroyed while their close was missed). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_LISTENERS);
	__type(key, __u64);
	__type(value, struct tcpstates_listener_drops);
} listener_drops SEC(".maps");

/* The last walk's sockets per destination whose local port is ephemeral. User space clears it
 * before each walk. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_DESTINATIONS);
	__type(key, struct tcpstates_destination_key);
	__type(value, __u64);
} destinations SEC(".maps");

/* net.ipv4.ip_local_port_range of the walked namespace, read by user space before each walk
 * (0, 0: not known, nothing counted). */
volatile __u16 ephemeral_low = 0;
volatile __u16 ephemeral_high = 0;

struct tcpstates_queue_walk_totals queue_walk_totals = {};

/* A socket's drop count as sk_drops_read() reads it: sk_drops, or, where the socket has them
 * (Linux >= 6.18, not TCP's today), its per-NUMA-node counters. */
static __always_inline __u32 drops_of(const struct sock *sk)
{
	__u32 drops = BPF_CORE_READ(sk, sk_drops.counter);

	if (bpf_core_field_exists(sk->sk_drop_counters)) {
		const struct numa_drop_counters *numa = BPF_CORE_READ(sk, sk_drop_counters);

		if (numa)
			drops += BPF_CORE_READ(numa, drops0.counter) +
				 BPF_CORE_READ(numa, drops1.counter);
	}
	return drops;
}

/* Adds what a listener's drop count grew by since `seen` was taken. A count lower than seen
 * is another listener's at a reused address (the first's close missed): its start. */
static __always_inline void add_drops(struct tcpstates_listener_drops *seen, __u32 drops)
{
	struct tcpstates_walk_key key = {.port = seen->port, .ipv6 = seen->ipv6};
	__u64 *total;

	if (drops > seen->drops) {
		total = bpf_map_lookup_elem(&listen_drops, &key);
		if (!total) {
			__u64 zero = 0;

			update_entry(&listen_drops, &key, &zero, BPF_NOEXIST);
			total = bpf_map_lookup_elem(&listen_drops, &key);
		}
		if (total)
			__sync_fetch_and_add(total, drops - seen->drops);
	}
	seen->drops = drops;
}

/* CLOSE -> LISTEN in the walked namespace: followed from its first drop. */
static __always_inline void listener_opened(const struct sock *sk, int ipv6, __u16 port)
{
	__u64 id = (__u64)sk;
	struct tcpstates_listener_drops fresh = {
		.drops = drops_of(sk),
		.port = port,
		.ipv6 = ipv6,
		.walked = walk_generation,
	};

	if (!walked_net || (__u64)BPF_CORE_READ(sk, __sk_common.skc_net.net) != walked_net)
		return;
	/* No room: the next walk tries again, and counts it if it still finds none. */
	update_entry(&listener_drops, &id, &fresh, BPF_ANY);
}

/* LISTEN -> CLOSE: the drops since the last walk, and the listener forgotten. */
static __always_inline void listener_closed(const struct sock *sk)
{
	__u64 id = (__u64)sk;
	struct tcpstates_listener_drops *seen = bpf_map_lookup_elem(&listener_drops, &id);

	if (!seen)
		return;
	add_drops(seen, drops_of(sk));
	bpf_map_delete_elem(&listener_drops, &id);
}

/* A listener the walk visits: its queue into its port's, its drops since the last read. */
static __always_inline void walk_listener(const struct sock *sk, int ipv6, __u16 port)
{
	struct tcpstates_walk_key key = {.port = port, .ipv6 = ipv6};
	struct tcpstates_listen_queue *queue = bpf_map_lookup_elem(&listen_queues, &key);
	struct tcpstates_listener_drops *seen;
	__u32 drops = drops_of(sk);
	__u64 id = (__u64)sk;

	if (!queue) {
		struct tcpstates_listen_queue zero = {};

		update_entry(&listen_queues, &key, &zero, BPF_NOEXIST);
		queue = bpf_map_lookup_elem(&listen_queues, &key);
	}
	if (queue) {
		/* One walk at a time writes this map. */
		queue->length += BPF_CORE_READ(sk, sk_ack_backlog);
		queue->limit += BPF_CORE_READ(sk, sk_max_ack_backlog);
	}
	seen = bpf_map_lookup_elem(&listener_drops, &id);
	if (seen) {
		add_drops(seen, drops);
		seen->walked = walk_generation;
		return;
	}
	{
		/* First seen now (older than the daemon, or listening since before the namespace
		 * was known): followed from here. */
		struct tcpstates_listener_drops fresh = {
			.drops = drops,
			.port = port,
			.ipv6 = ipv6,
			.walked = walk_generation,
		};

		if (update_entry(&listener_drops, &id, &fresh, BPF_NOEXIST) != 0)
			queue_walk_totals.untracked_listeners += 1;
	}
}

/* A connection (full or timewait socket, not a listener nor a request) the walk visits: one
 * more ephemeral port towards its destination if its local port is in the range. */
static __always_inline void walk_destination(const struct sock_common *common, int ipv6,
					     __u16 lport, __u16 rport)
{
	struct tcpstates_destination_key key = {.port = rport, .ipv6 = ipv6};
	__u64 one = 1, *sockets;

	if (!ephemeral_high || lport < ephemeral_low || lport > ephemeral_high)
		return;
	if (ipv6)
		BPF_CORE_READ_INTO(&key.addr, common, skc_v6_daddr);
	else
		BPF_CORE_READ_INTO((__be32 *)key.addr, common, skc_daddr);
	sockets = bpf_map_lookup_elem(&destinations, &key);
	if (sockets)
		*sockets += 1;
	else if (update_entry(&destinations, &key, &one, BPF_NOEXIST) != 0)
		queue_walk_totals.uncounted_sockets += 1;
}

#endif

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The walk of every TCP socket of the caller's network namespace (iter/tcp), run by the daemon
 * at start and then in the background. The kernel runs it on each socket with the socket locked,
 * so no transition of that socket runs meanwhile. For a full socket it makes sure of the record:
 * a socket older than the daemon gets one (and its count in the gauge), a record whose state is
 * not the socket's (a transition the programs missed) is corrected, counted. What makes no
 * transition the tracepoint sees is counted per family, state and service port in `walked`:
 * timewait sockets (in their substate, as `ss` reports them), request sockets (SYN_RECV), and
 * full sockets the table had no room for. Per family, state and service port it also keeps the
 * earliest entry time of the recorded full sockets in `oldest` (the age of the oldest). It also
 * finds the queues (queues.bpf.h): the listeners' accept queues and drops, the ephemeral ports in
 * use per destination. User space zeroes `walk_totals`, `walked` and `oldest` before each walk
 * and runs one at a time.
 */
#ifndef TCPSTATESD_BPF_WALK_BPF_H
#define TCPSTATESD_BPF_WALK_BPF_H

#include "counts.bpf.h"
#include "queues.bpf.h"
#include "records.bpf.h"

#define TCPSTATES_MAX_WALK_KEYS 16384

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_WALK_KEYS);
	__type(key, struct tcpstates_walk_key);
	__type(value, __u64);
} walked SEC(".maps");

struct tcpstates_walk_totals walk_totals = {};

/* Per family, state and service port, the earliest entry time among the full sockets the walk
 * found with a record. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_WALK_KEYS);
	__type(key, struct tcpstates_walk_key);
	__type(value, struct tcpstates_walk_oldest);
} oldest SEC(".maps");

/*
 * The sweep. Records of the walked namespace that no walk has seen for two walks (nor were made
 * since), which the daemon finds by reading the record table after a walk and lists here: at
 * the end of the next walk each is checked again and, if it still is so, uncounted and left in
 * CLOSE (its address's next socket starts anew). They are sockets the kernel destroyed while
 * the programs missed their last transitions and their end. Two walks, not one: a socket can be
 * between its transition and its hashing (connect(), listen()) while a walk passes its bucket.
 * The check runs in the kernel, on the few listed, so that it does not race with the programs
 * as a write from user space would.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_STALE_RECORDS);
	__type(key, __u64);
	__type(value, __u8);
} stale_records SEC(".maps");

/* The entries of destroyed sockets (bpf/records.bpf.h, forget_socket()) that the daemon found
 * in the record table after a walk, deleted at the end of the next: those a new socket took
 * over meanwhile stay. A bounded number a walk (the deletes run in one go). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCPSTATES_MAX_DESTROYED_RECORDS);
	__type(key, __u64);
	__type(value, __u8);
} destroyed_records SEC(".maps");

/* Counts a socket the gauge takes from the walk. A key the map has no room for goes to port 0,
 * whose keys user space adds before the walk. */
static __always_inline void count_walked(int ipv6, __u8 state, __u16 port)
{
	struct tcpstates_walk_key key = {.port = port, .ipv6 = ipv6, .state = state};
	__u64 one = 1, *value = bpf_map_lookup_elem(&walked, &key);

	if (!value && update_entry(&walked, &key, &one, BPF_NOEXIST) == 0)
		return;
	if (!value) {
		key.port = 0;
		value = bpf_map_lookup_elem(&walked, &key);
	}
	if (value)
		*value += 1;
}

/* Takes a recorded socket's entry time into its key's earliest. Only the walk writes the map, one
 * socket at a time. A key the map has no room for goes to port 0, as in count_walked(). Not
 * listeners: a listener stays in LISTEN by design, its age is its service's uptime. */
static __always_inline void note_oldest(const struct tcpstates_socket *record)
{
	struct tcpstates_walk_key key = {
		.port = record->port,
		.ipv6 = (record->flags & TCPSTATES_SOCKET_IPV6) != 0,
		.state = record->state,
	};
	struct tcpstates_walk_oldest fresh = {
		.since_ns = record->since_ns,
		.start_unknown = (record->flags & TCPSTATES_SOCKET_START_UNKNOWN) != 0,
	};
	struct tcpstates_walk_oldest *value;

	if (record->state == TCPSTATES_LISTEN)
		return;
	value = bpf_map_lookup_elem(&oldest, &key);
	if (!value && update_entry(&oldest, &key, &fresh, BPF_NOEXIST) == 0)
		return;
	if (!value) {
		key.port = 0;
		value = bpf_map_lookup_elem(&oldest, &key);
	}
	if (!value)
		return;
	if (fresh.since_ns < value->since_ns)
		value->since_ns = fresh.since_ns;
	value->start_unknown += fresh.start_unknown;
}

static __always_inline void note_listener(const struct sock *sk, int ipv6, __u16 port,
					  const struct tcpstates_socket *record)
{
	struct tcpstates_listener_key key = listener_key(sk, ipv6, port, DIRECT);
	struct tcpstates_listener listener = {.sk = (__u64)sk};

	walk_totals.listening_ports[port / 64] |= 1ULL << (port % 64);
	if (port_listening)
		add_service_port(port);
	/* A listener older than the daemon: its children's owner stays unknown, but a listener the
	 * map lost (another on its port closed) is found again. */
	if (record && record->cgroup_id)
		listener.owner.cgroup_id = record->cgroup_id;
	update_entry(&listeners, &key, &listener, BPF_NOEXIST);
}

static __always_inline void walk_full_socket(const struct sock *sk, int ipv6, __u8 state,
					     __u16 lport, __u16 rport)
{
	struct tcpstates_socket *entry = record_entry(sk), *record = live_record(entry);
	struct tcpstates_tuple_counts *gauge;
	__u64 net = (__u64)sk->__sk_common.skc_net.net;

	walked_net = net;
	if (state == TCPSTATES_LISTEN)
		note_listener(sk, ipv6, lport, record);
	if (record) {
		record->walked = walk_generation;
		if (record->state != state) {
			/* A transition was missed: the count moves; when the socket entered its
			 * state is not known, only that it is there now. */
			record_counts(record, &gauge, 0);
			gauge_add(gauge, record->state, -1);
			record->state = state;
			record->since_ns = bpf_ktime_get_ns();
			record->flags |= TCPSTATES_SOCKET_START_UNKNOWN;
			gauge_add(gauge, state, 1);
			walk_totals.corrected += 1;
		}
		note_oldest(record);
		return;
	}
	{
		__u8 origin = state == TCPSTATES_LISTEN ? TCPSTATES_ORIGIN_LISTENER
							: TCPSTATES_ORIGIN_UNKNOWN;
		struct tcpstates_socket fresh = {
			/* older than the daemon: in its state since some time before now */
			.since_ns = bpf_ktime_get_ns(),
			.net = net,
			.port = service_port(origin, lport, rport),
			.state = state,
			.origin = origin,
			.flags = TCPSTATES_SOCKET_START_UNKNOWN | (ipv6 ? TCPSTATES_SOCKET_IPV6 : 0),
			.walked = walk_generation,
		};
		int overflow = 0;
		struct tcpstates_tuple_counts *counts =
			tuple_counts(ipv6, fresh.port, 0, &overflow, 0);

		if (overflow)
			fresh.flags |= TCPSTATES_SOCKET_OVERFLOW;
		if (!add_record(sk, entry, &fresh)) {
			/* No room in the table (or a transition recorded it meanwhile: not
			 * under the socket's lock, so no room). */
			count(TCPSTATES_COUNTER_WALK_RECORD_FAILED);
			walk_totals.unrecorded += 1;
			count_walked(ipv6, state, fresh.port);
			return;
		}
		gauge_add(counts, state, 1);
		walk_totals.recorded += 1;
		note_oldest(&fresh);
	}
}

/* Whether a record is of a socket of the walked namespace gone unseen. */
static __always_inline int is_stale(const struct tcpstates_socket *record)
{
	return walked_net && record->net == walked_net && record->state != TCPSTATES_CLOSE &&
	       (__u8)(walk_generation - record->walked) >= 2;
}

static long sweep_record(void *map, const __u64 *key, void *value, void *context)
{
	struct tcpstates_socket *record = bpf_map_lookup_elem(&socket_records, key);
	struct tcpstates_tuple_counts *gauge;

	(void)map;
	(void)value;
	(void)context;
	if (!record || !is_stale(record))
		return 0;
	record_counts(record, &gauge, 0);
	gauge_add(gauge, record->state, -1);
	record->left_state = record->state;
	record->state = TCPSTATES_CLOSE;
	walk_totals.swept += 1;
	return 0;
}

/* A new socket's first transition may take the entry over at the same time (add_record()):
 * whichever swaps its `net` first has it. */
static long delete_destroyed(void *map, const __u64 *key, void *value, void *context)
{
	struct tcpstates_socket *entry = bpf_map_lookup_elem(&socket_records, key);

	(void)map;
	(void)value;
	(void)context;
	if (entry && __sync_val_compare_and_swap(&entry->net, TCPSTATES_NET_DESTROYED,
						 TCPSTATES_NET_DELETING) == TCPSTATES_NET_DESTROYED) {
		bpf_map_delete_elem(&socket_records, key);
		walk_totals.deleted += 1;
	}
	return 0;
}

SEC("iter/tcp")
int tcpstates_walk(struct bpf_iter__tcp *ctx)
{
	struct sock_common *common = ctx->sk_common;
	__u16 lport, rport;
	__u8 state;
	int ipv6;

	if (!common) {
		/* the end of the walk */
		bpf_for_each_map_elem(&stale_records, sweep_record, 0, 0);
		bpf_for_each_map_elem(&destroyed_records, delete_destroyed, 0, 0);
		/* Known from here on even if no socket was visited (a namespace of no socket yet):
		 * the listeners opened from now on are followed from their first drop. */
		{
			struct seq_net_private *walked =
				BPF_CORE_READ(ctx->meta, seq, private);

			walked_net = (__u64)BPF_CORE_READ(walked, net);
		}
		return 0;
	}
	walk_totals.sockets += 1;
	state = common->skc_state;
	ipv6 = common->skc_family == AF_INET6;
	lport = common->skc_num;
	rport = bpf_ntohs(common->skc_dport);
	if (state == TCPSTATES_TIME_WAIT) {
		struct tcp_timewait_sock *timewait = bpf_skc_to_tcp_timewait_sock(common);

		if (!timewait)
			return 0;
		state = timewait->tw_sk.tw_substate;
		count_walked(ipv6, state, service_port(TCPSTATES_ORIGIN_UNKNOWN, lport, rport));
		walk_destination(common, ipv6, lport, rport);
	} else if (state == TCPSTATES_NEW_SYN_RECV) {
		count_walked(ipv6, TCPSTATES_SYN_RECV,
			     service_port(TCPSTATES_ORIGIN_PASSIVE, lport, rport));
	} else if (tcpstates_state_has_slot(state) && state != TCPSTATES_CLOSE) {
		struct tcp_sock *full = bpf_skc_to_tcp_sock(common);

		if (!full)
			return 0;
		walk_full_socket((const struct sock *)full, ipv6, state, lport, rport);
		if (state == TCPSTATES_LISTEN)
			walk_listener((const struct sock *)full, ipv6,
				      service_port(TCPSTATES_ORIGIN_LISTENER, lport, 0));
		else
			walk_destination(common, ipv6, lport, rport);
	}
	return 0;
}

#endif

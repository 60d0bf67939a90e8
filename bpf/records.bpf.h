/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the programs know of a socket: its record (struct tcpstates_socket), its ports and
 * service port, its owner (the task that called connect() or listen(); a passively opened
 * child's is its listener's, found in `listeners`), and for `trace` the owner's pid and comm.
 */
#ifndef TCPSTATESD_BPF_RECORDS_BPF_H
#define TCPSTATESD_BPF_RECORDS_BPF_H

#include "maps.bpf.h"

/* The table's entry at a socket's address: the socket's record, a destroyed socket's
 * (tcpstates_record_destroyed()), or NULL. */
static __always_inline struct tcpstates_socket *record_entry(const void *sk)
{
	__u64 key = (__u64)sk;

	return bpf_map_lookup_elem(&socket_records, &key);
}

/* The socket's record, NULL if it has none. */
static __always_inline struct tcpstates_socket *live_record(struct tcpstates_socket *entry)
{
	return entry && !tcpstates_record_destroyed(entry) ? entry : 0;
}

static __always_inline struct tcpstates_socket *find_record(const void *sk)
{
	return live_record(record_entry(sk));
}

/* Stores a socket's first record; `entry` is the table's entry at its address (record_entry()),
 * a destroyed socket's or NULL. A destroyed socket's entry is taken over: no allocation. NULL
 * when the table has no room (full, or no memory: update_entry(); the caller counts it), the
 * socket has a record already, or the walk's sweep is deleting the entry (the socket's next
 * transition tries again). */
static __always_inline struct tcpstates_socket *add_record(const void *sk,
							   struct tcpstates_socket *entry,
							   const struct tcpstates_socket *fresh)
{
	__u64 key = (__u64)sk;

	if (entry) {
		/* Against the sweep, which swaps in TCPSTATES_NET_DELETING before it deletes. */
		if (__sync_val_compare_and_swap(&entry->net, TCPSTATES_NET_DESTROYED, fresh->net) !=
		    TCPSTATES_NET_DESTROYED)
			return 0;
		*entry = *fresh;
		return entry;
	}
	if (update_entry(&socket_records, &key, fresh, BPF_NOEXIST) != 0)
		return 0;
	return bpf_map_lookup_elem(&socket_records, &key);
}

/* The kernel destroys the socket. With a walk to sweep them, its record stays, marked, for the
 * next socket the kernel makes at this address: deleting an entry and adding one cost the
 * programs over 200 ns a transition here (docs/performance.md, "What was tried"). Without
 * (`trace`, events.btf_path), it goes. */
static __always_inline void forget_socket(const void *sk, struct tcpstates_socket *record)
{
	__u64 key = (__u64)sk;

	if (keep_destroyed_records) {
		record->net = TCPSTATES_NET_DESTROYED;
		return;
	}
	bpf_map_delete_elem(&socket_records, &key);
	if (event_details)
		bpf_map_delete_elem(&socket_tasks, &key);
}

/* A full socket's local port, host byte order: skc_num, but for a socket in CLOSE inet_sport,
 * since skc_num is already 0 when a socket that released its port reaches CLOSE (inet_sport lies
 * past struct sock, where tp_btf does not let a program read directly: a probe read). */
static __always_inline __u16 local_port(const struct sock *sk, int state, enum access access)
{
	if (state != TCPSTATES_CLOSE)
		return SK_READ(access, sk, __sk_common.skc_num);
	return bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
}

static __always_inline __u16 remote_port(const struct sock *sk, enum access access)
{
	return bpf_ntohs(SK_READ(access, sk, __sk_common.skc_dport));
}

static __always_inline int is_tcp(const struct sock *sk, enum access access)
{
	if (access == DIRECT)
		return BPF_CORE_READ_BITFIELD(sk, sk_protocol) == IPPROTO_TCP;
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline void add_service_port(__u16 port)
{
	__sync_fetch_and_or(&service_ports[port / 64], 1ULL << (port % 64));
}

/* The service port a socket's tuple carries (0 when no family carries the port label). */
static __always_inline __u16 service_port(__u8 origin, __u16 lport, __u16 rport)
{
	if (!label_port)
		return 0;
	return tcpstates_service_port(service_ports, port_listening, origin, lport, rport);
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

/* The task on the CPU, as the owner of the socket whose connect() or listen() it runs. */
static __always_inline void current_owner(struct tcpstates_owner *owner)
{
	owner->cgroup_id = bpf_get_current_cgroup_id();
	owner->pid = bpf_get_current_pid_tgid() >> 32;
	if (event_details)
		bpf_get_current_comm(owner->comm, sizeof(owner->comm));
}

static __always_inline struct tcpstates_listener_key listener_key(const struct sock *sk, int ipv6,
								  __u16 port, enum access access)
{
	struct tcpstates_listener_key key = {
		.net = (__u64)SK_READ(access, sk, __sk_common.skc_net.net),
		.port = port,
		.ipv6 = ipv6,
	};
	return key;
}

/* At listen(): the listener its children will find. Several sockets may listen on one port
 * (SO_REUSEPORT): the last listen() names their children's owner. */
static __always_inline void remember_listener(const struct sock *sk, int ipv6, __u16 port,
					      const struct tcpstates_owner *owner, enum access access)
{
	struct tcpstates_listener_key key = listener_key(sk, ipv6, port, access);
	struct tcpstates_listener listener = {
		.sk = (__u64)sk,
		.owner = *owner,
	};

	update_entry(&listeners, &key, &listener, BPF_ANY);
	if (port_listening)
		add_service_port(port);
}

static __always_inline void forget_listener(const struct sock *sk, int ipv6, __u16 port,
					    enum access access)
{
	struct tcpstates_listener_key key = listener_key(sk, ipv6, port, access);
	struct tcpstates_listener *listener = bpf_map_lookup_elem(&listeners, &key);

	if (listener && listener->sk == (__u64)sk)
		bpf_map_delete_elem(&listeners, &key);
}

/* A passively opened child's owner: its listener's (zero if the listener was not seen). */
static __always_inline void listener_owner(const struct sock *child, int ipv6, __u16 port,
					   struct tcpstates_owner *owner, enum access access)
{
	struct tcpstates_listener_key key = listener_key(child, ipv6, port, access);
	struct tcpstates_listener *listener = bpf_map_lookup_elem(&listeners, &key);

	if (listener)
		*owner = listener->owner;
}

/* For `trace`: the owner's pid and comm, kept beside the record. */
static __always_inline void remember_task(const void *sk, const struct tcpstates_owner *owner)
{
	__u64 key = (__u64)sk;
	struct tcpstates_task task = {.pid = owner->pid};

	if (!event_details)
		return;
	__builtin_memcpy(task.comm, owner->comm, sizeof(task.comm));
	update_entry(&socket_tasks, &key, &task, BPF_ANY);
}

/* A socket's owner for `trace`: cgroup from its record, pid and comm from its task. */
static __always_inline void owner_of(const void *sk, const struct tcpstates_socket *record,
				     struct tcpstates_owner *owner)
{
	__u64 key = (__u64)sk;
	struct tcpstates_task *task;

	if (!record)
		return;
	owner->cgroup_id = record->cgroup_id;
	task = bpf_map_lookup_elem(&socket_tasks, &key);
	if (task) {
		owner->pid = task->pid;
		__builtin_memcpy(owner->comm, task->comm, sizeof(owner->comm));
	}
}

#endif

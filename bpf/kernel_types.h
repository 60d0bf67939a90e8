/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types the program reads, declared with preserve_access_index so that
 * libbpf relocates every field access against the running kernel's BTF at load time
 * (CO-RE). Only names matter: offsets here are placeholders, which is why the build never
 * needs the build host's kernel or a generated vmlinux.h.
 */
#ifndef TCPSTATESD_BPF_KERNEL_TYPES_H
#define TCPSTATESD_BPF_KERNEL_TYPES_H

#include <linux/types.h>

struct in6_addr {
	__u8 u6_addr8[16];
};

struct net {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	possible_net_t skc_net;
	volatile unsigned char skc_state;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	unsigned long skc_flags; /* sk_flags; bit SOCK_DEAD: an orphan (closed by its application) */
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

/* Drop counters spread over NUMA nodes, which a socket may use instead of sk_drops (Linux
 * 6.18: UDP's; sk_drops_read() adds both). Absent before 6.18. */
struct numa_drop_counters {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;      /* the pending error a failed connection leaves for the application */
	int sk_err_soft; /* an ICMP error that came while the application held the socket */
	/* A listener's accept queue: its length and listen()'s backlog (bpf/queues.bpf.h). */
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
	atomic_t sk_drops;
	struct numa_drop_counters *sk_drop_counters;
} __attribute__((preserve_access_index));

/* enum sock_flags: SOCK_DEAD has been its first value since the enum exists. */
#define SOCK_DEAD 0

struct tcp_sock {
	int linger2;     /* TCP_LINGER2: an orphan's FIN_WAIT2 lifetime; < 0: abort it at close() */
	__u32 srtt_us;   /* 8 times the smoothed RTT in microseconds; 0: no sample yet (the child's,
			  * when its handshake completes: the handshake's one sample) */
} __attribute__((preserve_access_index));

/* A request socket (a handshake in progress on a listener): the SYN-ACK retransmissions'. */
struct request_sock {
	struct sock_common __req_common;
} __attribute__((preserve_access_index));

/* What the reset program reads of the segment a RST answers: its IP and TCP headers. */
struct sk_buff {
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
	__be16 protocol;
} __attribute__((preserve_access_index));

/* inet_sport, not skc_num, is the local port: skc_num is already 0 when a socket that
 * released its port reaches CLOSE, inet_sport still holds it (as the classic tracepoint
 * reports). */
struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

/* What the walk (iter/tcp) reads of the timewait sockets, which the tracepoint never sees. */
struct inet_timewait_sock {
	volatile unsigned char tw_substate; /* FIN_WAIT2 or TIME_WAIT: what `ss` reports */
} __attribute__((preserve_access_index));

struct tcp_timewait_sock {
	struct inet_timewait_sock tw_sk;
} __attribute__((preserve_access_index));

/* The walked network namespace, from the iterator's seq_file: its private data starts with a
 * struct seq_net_private (struct bpf_tcp_iter_state). */
struct seq_file {
	void *private;
} __attribute__((preserve_access_index));

struct seq_net_private {
	struct net *net;
} __attribute__((preserve_access_index));

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 seq_num; /* sockets visited so far in this walk */
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct bpf_map;

struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

#endif

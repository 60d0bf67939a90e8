/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Counting under label tuples: finding a tuple's counts (a new tuple is added, and user space is
 * told so it can name the cgroup), the overflow tuple when the table is full, the gauge moves of
 * a socket, the duration and handshake RTT histograms.
 */
#ifndef TCPSTATESD_BPF_COUNTS_BPF_H
#define TCPSTATESD_BPF_COUNTS_BPF_H

#include "maps.bpf.h"
#include "native.bpf.h"

/* What a new tuple's counts start from (too large for the stack). */
static const struct tcpstates_tuple_counts zero_counts;
static const struct tcpstates_histogram zero_histogram;

/* With the ring buffer only (user space names a tuple it was not told of when it first reads
 * it): the perf buffer needs the tracepoint's context, and serves kernels without a ring buffer,
 * which the daemon does not document. */
static __always_inline int notify_of(enum transport transport)
{
	return !event_details && transport == RING_BUFFER;
}

static __always_inline void notify_new_tuple(const struct tcpstates_tuple_key *key)
{
	struct tcpstates_new_tuple *record;

	record = bpf_ringbuf_reserve(&ring_events, sizeof(*record), 0);
	if (!record) {
		count(TCPSTATES_COUNTER_RINGBUF_FULL);
		return;
	}
	record->key = *key;
	bpf_ringbuf_submit(record, 0);
}

/* The counts of a tuple in the table in use, added if new (and user space told of it if
 * `notify`). When the table has no room (full, or no memory: update_entry()): the overflow
 * tuple's, and *overflow is set. NULL only if the tables are missing. */
static __always_inline struct tcpstates_tuple_counts *
tuple_counts(int ipv6, __u16 port, __u64 cgroup_id, int *overflow, int notify)
{
	struct tcpstates_tuple_key key = {
		.cgroup_id = cgroup_id,
		.port = port,
		.ipv6 = ipv6,
	};
	struct tcpstates_tuple_counts *counts;
	__u32 zero = 0;
	void *table;

	if (event_details)
		return 0; /* `trace` counts nothing */
	table = bpf_map_lookup_elem(&tuple_tables, &zero);
	if (!table)
		return 0;
	if (*overflow)
		goto overflow;
	counts = bpf_map_lookup_elem(table, &key);
	if (counts)
		return counts;
	/* EEXIST: another CPU added it meanwhile. */
	if (update_entry(table, &key, &zero_counts, BPF_NOEXIST) == 0 && notify)
		notify_new_tuple(&key);
	counts = bpf_map_lookup_elem(table, &key);
	if (counts)
		return counts;
	*overflow = 1;
	count(TCPSTATES_COUNTER_TUPLE_TABLE_FULL);
overflow:
	count(TCPSTATES_COUNTER_TUPLE_OVERFLOW);
	key.cgroup_id = 0;
	key.port = 0;
	key.flags = TCPSTATES_TUPLE_OVERFLOW;
	/* User space puts both families' overflow tuples in every table before it is used. */
	return bpf_map_lookup_elem(table, &key);
}

/* The counts of the tuple a socket's record names. *gauge is where the socket's own count moves:
 * the same counts, or NULL when its tuple had to give way to the overflow tuple (the table
 * swapped since the socket was counted, and full): the socket's count cannot move then. */
static __always_inline struct tcpstates_tuple_counts *
record_counts(const struct tcpstates_socket *record, struct tcpstates_tuple_counts **gauge,
	      int notify)
{
	int counted_in_overflow = (record->flags & TCPSTATES_SOCKET_OVERFLOW) != 0;
	int overflow = counted_in_overflow;
	struct tcpstates_tuple_counts *counts =
		tuple_counts((record->flags & TCPSTATES_SOCKET_IPV6) != 0, record->port,
			     record->cgroup_id, &overflow, notify);

	*gauge = overflow == counted_in_overflow ? counts : 0;
	return counts;
}

/* The gauge: a socket with a record is counted in its state, CLOSE excepted (ss shows no
 * closed socket), in its record's tuple. */
static __always_inline void gauge_add(struct tcpstates_tuple_counts *counts, __u8 state,
				      __s64 delta)
{
	if (event_details || state == TCPSTATES_CLOSE || !tcpstates_state_has_slot(state))
		return;
	if (!counts) {
		count(TCPSTATES_COUNTER_GAUGE_LOST);
		return;
	}
	__sync_fetch_and_add(&counts->sockets[state_slot(state)], delta);
}

/* The bucket of a duration among the classic bounds in force (`generation`) of the duration
 * histograms, or of the handshake RTT's with `handshake_rtt`: the first bound it does not exceed
 * (binary search over at most 64 bounds), or the +Inf bucket after the last. A global function,
 * which the verifier checks once: inlined, its search was checked along every path of the
 * transition programs, and Linux 6.1's verifier gave up on the nested one (a million
 * instructions). */
__noinline __u32 bucket_of(__u32 generation, int handshake_rtt, __u64 duration_ns)
{
	const struct tcpstates_bucket_bounds *bounds = handshake_rtt
							       ? &handshake_rtt_bounds[generation & 1]
							       : &bucket_bounds[generation & 1];
	__u32 low = 0, high = bounds->count;

	if (high > TCPSTATES_MAX_BUCKETS)
		high = TCPSTATES_MAX_BUCKETS;
	/* Invariant: bound[i] < duration for i < low, bound[i] >= duration for i >= high. */
	for (int step = 0; step < 7 && low < high; step++) {
		__u32 middle = (low + high) / 2;

		if (bounds->bound_ns[bounded(middle, TCPSTATES_MAX_BUCKETS)] < duration_ns)
			low = middle + 1;
		else
			high = middle;
	}
	return low;
}

static __always_inline void observe(struct tcpstates_histogram *histogram, __u32 bucket,
				    __u64 duration_ns)
{
	__sync_fetch_and_add(&histogram->buckets[bounded(bucket, TCPSTATES_MAX_BUCKETS + 1)], 1);
	__sync_fetch_and_add(&histogram->sum_ns, duration_ns);
}

/* Counts an observation in its native bucket first, then its classic one: a scrape reads the
 * classic buckets first, so the native buckets it reads after hold every observation the
 * classic ones do (docs/architecture.md, "Native histograms"). With native histograms off (no
 * bounds) the call is skipped: it cost a few ns a transition (docs/performance.md). The call
 * tests the bounds again where it reads them: two reloads meanwhile may have rewritten them. */
static __always_inline void observe_both(struct tcpstates_histogram *histogram, __u32 bucket,
					 __u64 duration_ns, const struct tcpstates_duration_key *series,
					 int unlabelled)
{
	if (native_bounds[series->generation & 1].count &&
	    observe_native(series, unlabelled, duration_ns))
		__sync_fetch_and_add(&histogram->native_lost, 1);
	observe(histogram, bucket, duration_ns);
}

/* The labelled histogram of `key` in the table in use, added if new; NULL (counted) when the
 * table has no room: the caller observes in its unlabelled array instead. */
static __always_inline struct tcpstates_histogram *
labelled_histogram(const struct tcpstates_duration_key *key)
{
	struct tcpstates_histogram *histogram = 0;
	__u32 zero = 0;
	void *table = bpf_map_lookup_elem(&duration_tables, &zero);

	if (table) {
		histogram = bpf_map_lookup_elem(table, key);
		if (!histogram) {
			update_entry(table, key, &zero_histogram, BPF_NOEXIST);
			histogram = bpf_map_lookup_elem(table, key);
		}
	}
	if (!histogram)
		count(TCPSTATES_COUNTER_DURATION_OVERFLOW);
	return histogram;
}

/* Observes a duration of a socket of this tuple in the histogram of (from, to): the labelled
 * table's when durations carry a label (the unlabelled array's if it has no room), else the
 * array's. Returns 1 when it was the labelled table's; *observed is the histogram (NULL if
 * none could be found). */
static __always_inline int observe_duration(int ipv6, __u16 port, __u64 cgroup_id, __u8 from,
					     __u8 to, __u64 duration_ns,
					     struct tcpstates_histogram **observed)
{
	__u32 generation = bucket_generation & 1;
	__u32 bucket = bucket_of(generation, 0, duration_ns);
	struct tcpstates_histogram *histogram;
	__u32 slot;

	if (duration_label_port || duration_label_cgroup) {
		struct tcpstates_duration_key key = {
			.cgroup_id = duration_label_cgroup ? cgroup_id : 0,
			.port = duration_label_port ? port : 0,
			.ipv6 = ipv6,
			.from = from,
			.to = to,
			.generation = generation,
			.kind = TCPSTATES_HISTOGRAM_DURATION,
		};

		histogram = labelled_histogram(&key);
		*observed = histogram;
		if (histogram) {
			observe_both(histogram, bucket, duration_ns, &key, 0);
			return 1;
		}
	}
	slot = tcpstates_duration_slot(generation, ipv6, from, to);
	histogram = bpf_map_lookup_elem(&durations, &slot);
	*observed = histogram;
	if (histogram) {
		struct tcpstates_duration_key series = {
			.ipv6 = ipv6,
			.from = from,
			.to = to,
			.generation = generation,
			.kind = TCPSTATES_HISTOGRAM_DURATION,
		};

		observe_both(histogram, bucket, duration_ns, &series, 1);
	}
	return 0;
}

/* Observes the handshake RTT of a passively opened socket of this tuple, from its smoothed RTT
 * at SYN_RECV -> ESTABLISHED (struct tcp_sock's srtt_us, 8 times the microseconds: its first
 * sample exactly, what TCP_INFO's tcpi_rtt reports). 0 is no sample: counted, never observed.
 * A global function, which the verifier checks once: inlined, it was checked along every path
 * of the transition program, past the kernel's million instructions. */
__noinline int observe_handshake_rtt(int ipv6, __u16 port, __u64 cgroup_id, __u32 srtt_us)
{
	__u32 generation = bucket_generation & 1;
	struct tcpstates_histogram *histogram;
	__u64 rtt_ns = (__u64)(srtt_us >> 3) * 1000;
	__u32 bucket, slot;

	if (!srtt_us) {
		__u64 *unmeasured;

		slot = ipv6 ? 1 : 0;
		unmeasured = bpf_map_lookup_elem(&handshake_rtt_unmeasured, &slot);
		if (unmeasured)
			__sync_fetch_and_add(unmeasured, 1);
		return 0;
	}
	bucket = bucket_of(generation, 1, rtt_ns);
	if (handshake_rtt_label_port || handshake_rtt_label_cgroup) {
		struct tcpstates_duration_key key = {
			.cgroup_id = handshake_rtt_label_cgroup ? cgroup_id : 0,
			.port = handshake_rtt_label_port ? port : 0,
			.ipv6 = ipv6,
			.generation = generation,
			.kind = TCPSTATES_HISTOGRAM_HANDSHAKE_RTT,
		};

		histogram = labelled_histogram(&key);
		if (histogram) {
			observe_both(histogram, bucket, rtt_ns, &key, 0);
			return 0;
		}
	}
	slot = tcpstates_handshake_rtt_slot(generation, ipv6 ? 1 : 0);
	histogram = bpf_map_lookup_elem(&handshake_rtts, &slot);
	if (histogram) {
		struct tcpstates_duration_key series = {
			.ipv6 = ipv6 ? 1 : 0,
			.generation = generation,
			.kind = TCPSTATES_HISTOGRAM_HANDSHAKE_RTT,
		};

		observe_both(histogram, bucket, rtt_ns, &series, 1);
	}
	return 0;
}

static __always_inline void count_unknown_start(int ipv6, __u8 from, __u8 to)
{
	__u32 slot = tcpstates_unknown_start_slot(ipv6, from, to);
	__u64 *value = bpf_map_lookup_elem(&unknown_starts, &slot);

	if (value)
		__sync_fetch_and_add(value, 1);
}

#endif

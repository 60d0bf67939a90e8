/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Native histograms' buckets (bpf/tcpstates.h, struct tcpstates_native_bounds): each
 * observation of a duration or handshake RTT histogram is also counted in its exponential
 * bucket, a sparse entry of the native table in use, before its classic bucket.
 */
#ifndef TCPSTATESD_BPF_NATIVE_BPF_H
#define TCPSTATESD_BPF_NATIVE_BPF_H

#include "maps.bpf.h"

/* A binary search over the native bounds (the first bound a duration does not exceed), one
 * step per bpf_loop() call: the verifier checks the step once, where an unrolled search of 15
 * steps made it follow 2^15 paths (past its million instructions). */
struct native_search {
	__u64 duration_ns;
	__u32 generation;
	__u32 low;  /* bound[i] < duration for i < low */
	__u32 high; /* bound[i] >= duration for i >= high */
	__u32 pad;
};

static long native_search_step(__u32 step __attribute__((unused)), void *context)
{
	struct native_search *search = context;
	struct tcpstates_native_bounds *bounds = &native_bounds[search->generation & 1];
	__u32 middle;

	if (search->low >= search->high)
		return 1;
	middle = (search->low + search->high) / 2;
	if (bounds->bound_ns[bounded(middle, TCPSTATES_NATIVE_MAX_BOUNDS)] < search->duration_ns)
		search->low = middle + 1;
	else
		search->high = middle;
	return 0;
}

/* Counts an observation in its native bucket of `series` (a histogram's key; its generation
 * names the bounds). Returns 1 when the bucket could not be counted (the table full, the
 * duration past the top bound): the caller records it in the classic histogram's native_lost,
 * so that user space never serves native buckets that miss an observation. 0 when counted or
 * native histograms are off. A global function, verified once (see observe_handshake_rtt). */
__noinline int observe_native(const struct tcpstates_duration_key *series, int unlabelled,
			      __u64 duration_ns)
{
	struct tcpstates_native_key key = {};
	struct tcpstates_native_bounds *bounds;
	__u32 zero = 0, bound_count;
	__u64 one = 1, *value;
	void *table;

	if (!series)
		return 0;
	bounds = &native_bounds[series->generation & 1];
	bound_count = bounds->count;
	if (!bound_count)
		return 0;
	if (bound_count > TCPSTATES_NATIVE_MAX_BOUNDS)
		bound_count = TCPSTATES_NATIVE_MAX_BOUNDS;
	key.series = *series;
	key.unlabelled = unlabelled != 0;
	if (duration_ns == 0) {
		key.index = TCPSTATES_NATIVE_ZERO_INDEX;
	} else {
		struct native_search search = {
			.duration_ns = duration_ns,
			.generation = series->generation & 1,
			.high = bound_count,
		};

		/* 15 steps cover TCPSTATES_NATIVE_MAX_BOUNDS < 2^15. */
		bpf_loop(15, native_search_step, &search, 0);
		if (search.low >= bound_count)
			goto lost;
		key.index = bounds->first_index + (__s32)search.low;
	}
	table = bpf_map_lookup_elem(&native_tables, &zero);
	if (!table)
		goto lost;
	value = bpf_map_lookup_elem(table, &key);
	if (value) {
		__sync_fetch_and_add(value, 1);
		return 0;
	}
	/* EEXIST: another CPU added it meanwhile. */
	if (bpf_map_update_elem(table, &key, &one, BPF_NOEXIST) == 0)
		return 0;
	value = bpf_map_lookup_elem(table, &key);
	if (value) {
		__sync_fetch_and_add(value, 1);
		return 0;
	}
lost:
	count(TCPSTATES_COUNTER_NATIVE_LOST);
	return 1;
}

#endif

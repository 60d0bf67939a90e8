/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Native histograms' buckets (bpf/tcpstates.h, struct tcpstates_native_bounds): each
 * observation of a duration or handshake RTT histogram is also counted in its exponential
 * bucket, a sparse entry of the native table in use, before its classic bucket.
 */
#ifndef TCPSTATESD_BPF_NATIVE_BPF_H
#define TCPSTATESD_BPF_NATIVE_BPF_H

#include "maps.bpf.h"

/* Counts an observation in its native bucket of `series` (a histogram's key; its generation
 * names the bounds). Returns 1 when the bucket could not be counted (no room in the table, the
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
		__u32 cell, position;

		/* Past the top bound (also: below 2^63, as tcpstates_native_cell needs). */
		if (duration_ns > bounds->bound_ns[bounded(bound_count - 1, TCPSTATES_NATIVE_MAX_BOUNDS)])
			goto lost;
		cell = tcpstates_native_cell(duration_ns, bounds->cell_bits);
		position = bounds->cell_position[bounded(cell, TCPSTATES_NATIVE_CELLS)];
		if (bounds->bound_ns[bounded(position, TCPSTATES_NATIVE_MAX_BOUNDS)] < duration_ns)
			++position;
		key.index = bounds->first_index + (__s32)position;
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
	if (update_entry(table, &key, &one, BPF_NOEXIST) == 0)
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

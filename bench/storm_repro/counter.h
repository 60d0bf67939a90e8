/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The layout of counter.bpf.c's `hits` array, shared with its loader. */
#ifndef STORM_COUNTER_H
#define STORM_COUNTER_H

#define IPPROTO_TCP 6
#define AF_INET6 10

enum { STORM_FIRST, STORM_SECOND, STORM_RAW, STORM_CLASSIC, STORM_PROGRAMS };

/* States are below 16 (TCP_NEW_SYN_RECV is 12); anything else shares slot 15. */
#define STORM_STATES 16
#define STORM_SLOTS (STORM_PROGRAMS * 2 * STORM_STATES * STORM_STATES)

static inline unsigned int storm_slot(int program, int ipv6, int old_state, int new_state)
{
	unsigned int o = old_state >= 0 && old_state < STORM_STATES ? old_state : STORM_STATES - 1;
	unsigned int n = new_state >= 0 && new_state < STORM_STATES ? new_state : STORM_STATES - 1;

	return ((program * 2 + (ipv6 ? 1 : 0)) * STORM_STATES + o) * STORM_STATES + n;
}

#endif

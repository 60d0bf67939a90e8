// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Finds, for the daemon's first programs, the address of their recursion marks on each CPU
 * (bpf/recursion_marks.bpf.h says what the nested programs do with them). Two iterators, run once
 * by user space (daemon/kernel/recursion_marks.cpp) after the daemon's programs are loaded:
 *   - over the programs: each first program's `active`, a per-CPU pointer (the offset that each
 *     CPU's own offset turns into the address on that CPU);
 *   - over the maps: the daemon's `recursion_marks` (this object uses the daemon's, by its fd),
 *     whose per-CPU pointer it reads, and into whose value on each CPU it writes that value's own
 *     address: each CPU's address less the pointer is the CPU's offset.
 * No kernel symbol is needed (a typed __ksym resolves only where the kernel's symbol table has
 * its data). An object of its own, loaded after the daemon's: it needs the kernel's BTF and Linux
 * >= 5.19 (bpf_map_lookup_percpu_elem), which the daemon's programs do not.
 */
#include "recursion_marks.bpf.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog {
	int *active; /* a per-CPU pointer (bpf/recursion_marks.bpf.h: what it points to) */
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_prog {
	struct bpf_iter_meta *meta;
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

struct bpf_map___with_id {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_array {
	union {
		void *pptrs[0]; /* a per-CPU array's values, one per-CPU pointer each */
	};
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

/* Written by user space before the iterators run: the programs' ids (enum
 * tcpstates_first_program), the map's, the CPUs there may be. */
__u32 first_program_ids[TCPSTATES_FIRST_PROGRAMS] = {};
__u32 marks_map_id = 0;
__u32 possible_cpus = 0;

/* What they find: 0 where not found. */
__u64 first_program_active[TCPSTATES_FIRST_PROGRAMS] = {};
__u64 marks_percpu_pointer = 0;

SEC("iter/bpf_prog")
int find_first_programs(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *prog = ctx->prog;
	__u32 id;

	if (!prog)
		return 0;
	id = BPF_CORE_READ(prog, aux, id);
	for (int first = 0; first < TCPSTATES_FIRST_PROGRAMS; ++first)
		if (id == first_program_ids[first])
			bpf_core_read(&first_program_active[first], sizeof(__u64), &prog->active);
	return 0;
}

static long write_own_address(__u32 cpu, void *unused)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_percpu_elem(&recursion_marks, &key, cpu);

	(void)unused;
	if (!value)
		return 1;
	*value = (__u64)value;
	return 0;
}

SEC("iter/bpf_map")
int find_cpu_offsets(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;

	if (!map || BPF_CORE_READ((struct bpf_map___with_id *)map, id) != marks_map_id)
		return 0;
	bpf_core_read(&marks_percpu_pointer, sizeof(__u64), &((struct bpf_array *)map)->pptrs[0]);
	bpf_loop(possible_cpus, write_own_address, 0, 0);
	return 0;
}

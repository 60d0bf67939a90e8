// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Loader of counter.bpf.c: attaches the programs named on the command line and, for each line
 * read on stdin, prints one JSON line with their counts; exits at the end of stdin.
 *
 * Usage: storm_counter PROGRAMS LOW-HIGH
 *   PROGRAMS  comma-separated: first, second (tp_btf), raw (raw_tp), classic (tracepoint)
 *   LOW-HIGH  the local ports counted
 *
 * Printed: {"hits": {"PROGRAM": {"ipv4"|"ipv6": {"OLD-NEW": n}}},
 *           "entered": {"PROGRAM": runs, whatever the socket},
 *           "stats": {"PROGRAM": {"id": n, "recursion_misses": n}}}
 * recursion_misses is the kernel's count of hits it did not run the program for.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "counter.h"
#include "counter.skel.h"

static const char *const names[STORM_PROGRAMS] = {"first", "second", "raw", "classic"};

static struct bpf_program *program_of(struct counter_bpf *skel, int program)
{
	struct bpf_program *programs[STORM_PROGRAMS] = {skel->progs.first, skel->progs.second,
							skel->progs.raw, skel->progs.classic};
	return programs[program];
}

static void print_counts(struct counter_bpf *skel, const int wanted[STORM_PROGRAMS])
{
	int fd = bpf_map__fd(skel->maps.hits);
	const char *separator = "";

	printf("{\"hits\": {");
	for (int program = 0; program < STORM_PROGRAMS; program++) {
		if (!wanted[program])
			continue;
		printf("%s\"%s\": {", separator, names[program]);
		separator = ", ";
		for (int ipv6 = 0; ipv6 < 2; ipv6++) {
			const char *inner = "";

			printf("%s\"%s\": {", ipv6 ? ", " : "", ipv6 ? "ipv6" : "ipv4");
			for (int o = 0; o < STORM_STATES; o++)
				for (int n = 0; n < STORM_STATES; n++) {
					__u32 slot = storm_slot(program, ipv6, o, n);
					__u64 value = 0;

					if (bpf_map_lookup_elem(fd, &slot, &value) || !value)
						continue;
					printf("%s\"%d-%d\": %llu", inner, o, n,
					       (unsigned long long)value);
					inner = ", ";
				}
			printf("}");
		}
		printf("}");
	}
	printf("}, \"entered\": {");
	separator = "";
	for (__u32 program = 0; program < STORM_PROGRAMS; program++) {
		__u64 value = 0;

		if (!wanted[program])
			continue;
		bpf_map_lookup_elem(bpf_map__fd(skel->maps.entered), &program, &value);
		printf("%s\"%s\": %llu", separator, names[program], (unsigned long long)value);
		separator = ", ";
	}
	printf("}, \"stats\": {");
	separator = "";
	for (int program = 0; program < STORM_PROGRAMS; program++) {
		struct bpf_prog_info info = {};
		__u32 length = sizeof(info);

		if (!wanted[program])
			continue;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(program_of(skel, program)), &info,
					    &length))
			info.recursion_misses = ~0ULL;
		printf("%s\"%s\": {\"id\": %u, \"recursion_misses\": %llu}", separator,
		       names[program], info.id, (unsigned long long)info.recursion_misses);
		separator = ", ";
	}
	printf("}}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int wanted[STORM_PROGRAMS] = {0};
	unsigned int low, high;
	struct counter_bpf *skel;
	char line[64];

	if (argc != 3 || sscanf(argv[2], "%u-%u", &low, &high) != 2 || low > high ||
	    high > 65535) {
		fprintf(stderr, "usage: %s first,second,raw,classic LOW-HIGH\n", argv[0]);
		return 2;
	}
	for (char *name = strtok(argv[1], ","); name; name = strtok(NULL, ",")) {
		int program = 0;

		while (program < STORM_PROGRAMS && strcmp(names[program], name))
			program++;
		if (program == STORM_PROGRAMS) {
			fprintf(stderr, "unknown program %s (first, second, raw, classic)\n", name);
			return 2;
		}
		wanted[program] = 1;
	}

	skel = counter_bpf__open();
	if (!skel) {
		fprintf(stderr, "opening counter.bpf.o: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->port_low = low;
	skel->rodata->port_high = high;
	for (int program = 0; program < STORM_PROGRAMS; program++)
		bpf_program__set_autoload(program_of(skel, program), wanted[program]);
	if (counter_bpf__load(skel) || counter_bpf__attach(skel)) {
		fprintf(stderr, "loading or attaching the programs: %s (root? BTF?)\n",
			strerror(errno));
		counter_bpf__destroy(skel);
		return 1;
	}
	print_counts(skel, wanted); /* attached: the driver starts the storm after this line */
	while (fgets(line, sizeof(line), stdin))
		print_counts(skel, wanted);
	counter_bpf__destroy(skel);
	return 0;
}

/* Preloaded into the daemon by a test (LD_PRELOAD): libbpf's bpf_map_update_elem() refuses
 * inserts (BPF_NOEXIST) from user space with ENOMEM, as the kernel does when the daemon's memory
 * cgroup is at its limit, while the file TCPSTATESD_TEST_REFUSE_INSERTS names exists:
 *   "all": every insert;
 *   "carried": every insert but the overflow tuples'.
 * User space inserts only tuples (tcpstates_tuple_key): into a new tuple table at start and at
 * each swap of the count tables. A real memory limit cannot be aimed at those inserts alone: the
 * daemon's own page faults would wait at it too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpstates.h"

static int refused(const void* key) {
    const char* path = getenv("TCPSTATESD_TEST_REFUSE_INSERTS");
    char mode[16] = "";
    FILE* file = path ? fopen(path, "r") : NULL;

    if (!file) return 0;
    if (!fgets(mode, sizeof(mode), file)) mode[0] = '\0';
    fclose(file);
    if (strncmp(mode, "all", 3) == 0) return 1;
    return strncmp(mode, "carried", 7) == 0 &&
           !(((const struct tcpstates_tuple_key*)key)->flags & TCPSTATES_TUPLE_OVERFLOW);
}

int bpf_map_update_elem(int fd, const void* key, const void* value, __u64 flags) {
    int (*update)(int, const void*, const void*, __u64) =
        (int (*)(int, const void*, const void*, __u64))dlsym(RTLD_NEXT, "bpf_map_update_elem");

    if (flags == BPF_NOEXIST && refused(key)) {
        errno = ENOMEM;
        return -ENOMEM;
    }
    return update(fd, key, value, flags);
}

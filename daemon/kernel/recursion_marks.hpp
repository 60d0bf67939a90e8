// The first programs' recursion marks, for the nested programs (bpf/recursion_marks.bpf.h).
#pragma once

namespace tcpstatesd {

// Finds the address of the recursion mark of the programs `first_transition_fd` and
// `first_destroy_fd` on each CPU and writes them into the daemon's `recursion_marks` map
// (`marks_fd`). Throws BpfError saying why not (no kernel BTF, a kernel before 5.19): the nested
// programs then handle nothing. Call it before the nested programs are attached: meanwhile the
// map holds other numbers (bpf/recursion_marks.bpf.c).
void install_recursion_marks(int first_transition_fd, int first_destroy_fd, int marks_fd);

}  // namespace tcpstatesd

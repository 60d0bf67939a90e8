// tcpstatesd_bpf_line_info: where a loaded BPF program's JIT code comes from, for bench/profile.py.
//
// Usage: tcpstatesd_bpf_line_info PROG_ID
// Prints one line per line-info record of the program's main function (its subprograms have
// symbols of their own in a profile): the offset of its first JIT instruction, hexadecimal,
// then file:line and the source line, tab-separated. bpftool prints the same with `prog dump
// jited linum`, but only where it was built with libbfd, which Debian's is not.
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

int fail(const char* what) {
    std::fprintf(stderr, "tcpstatesd_bpf_line_info: %s: %s\n", what, std::strerror(errno));
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "Usage: tcpstatesd_bpf_line_info PROG_ID\n");
        return 2;
    }
    const int fd = bpf_prog_get_fd_by_id(static_cast<__u32>(std::strtoul(argv[1], nullptr, 10)));
    if (fd < 0) return fail("opening the program");
    bpf_prog_info counts{};
    __u32 length = sizeof counts;
    if (bpf_obj_get_info_by_fd(fd, &counts, &length) != 0) return fail("reading its sizes");

    std::vector<bpf_line_info> lines(counts.nr_line_info);
    std::vector<__u64> jited_lines(counts.nr_jited_line_info);
    std::vector<__u64> symbols(counts.nr_jited_ksyms);
    std::vector<__u32> function_lengths(counts.nr_jited_func_lens);
    bpf_prog_info info{};
    info.nr_line_info = counts.nr_line_info;
    info.line_info_rec_size = sizeof(bpf_line_info);
    info.line_info = reinterpret_cast<__u64>(lines.data());
    info.nr_jited_line_info = counts.nr_jited_line_info;
    info.jited_line_info_rec_size = sizeof(__u64);
    info.jited_line_info = reinterpret_cast<__u64>(jited_lines.data());
    info.nr_jited_ksyms = counts.nr_jited_ksyms;
    info.jited_ksyms = reinterpret_cast<__u64>(symbols.data());
    info.nr_jited_func_lens = counts.nr_jited_func_lens;
    info.jited_func_lens = reinterpret_cast<__u64>(function_lengths.data());
    length = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0) return fail("reading its line info");
    if (symbols.empty() || function_lengths.empty() || lines.size() != jited_lines.size()) {
        std::fprintf(stderr, "tcpstatesd_bpf_line_info: the program has no JIT line info\n");
        return 1;
    }
    btf* types = btf__load_from_kernel_by_id(counts.btf_id);
    if (types == nullptr) return fail("loading its BTF");

    const __u64 start = symbols[0], end = symbols[0] + function_lengths[0];
    for (size_t i = 0; i < lines.size(); ++i) {
        if (jited_lines[i] < start || jited_lines[i] >= end) continue;
        const char* file = btf__name_by_offset(types, lines[i].file_name_off);
        const char* source = btf__name_by_offset(types, lines[i].line_off);
        const char* base = file != nullptr ? std::strrchr(file, '/') : nullptr;
        std::printf("%llx\t%s:%u\t%s\n", static_cast<unsigned long long>(jited_lines[i] - start),
                    base != nullptr ? base + 1 : (file != nullptr ? file : "?"),
                    BPF_LINE_INFO_LINE_NUM(lines[i].line_col), source != nullptr ? source : "");
    }
    btf__free(types);
    return 0;
}

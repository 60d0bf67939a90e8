#include "kernel/bpf_program.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernel/bpf_maps.hpp"
#include "kernel/native_bounds.hpp"
#include "kernel/recursion_marks.hpp"
#include "process/capabilities.hpp"
#include "tcpstates.skel.h"

namespace tcpstatesd {

namespace {

constexpr const char* kBtfPath = "/sys/kernel/btf/vmlinux";

int route_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
    // Whole: a verifier log is one message of many lines.
    char* message = nullptr;
    const int n = vasprintf(&message, format, args);
    if (n < 0) return n;
    const std::unique_ptr<char, decltype(&free)> owned(message, free);
    std::string_view text(message, static_cast<size_t>(n));
    while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    // libbpf's warnings are detail behind our own one-line errors: shown at debug level.
    spdlog::debug("libbpf{}: {}", level == LIBBPF_WARN ? " warning" : "", text);
    return n;
}

// What to do about EPERM from the kernel.
std::string privilege_hint() {
    const auto effective = effective_capabilities();
    const auto holds = [&](unsigned capability) {
        return effective.has_value() && ((*effective >> capability) & 1) != 0;
    };
    // Holding the capabilities and still refused: something else said no. In a container
    // that is usually the runtime's default seccomp profile (podman's allows bpf() only
    // with CAP_SYS_ADMIN).
    if (holds(CAP_BPF) && holds(CAP_PERFMON))
        return "the process holds CAP_BPF and CAP_PERFMON, so a seccomp filter, kernel lockdown "
               "or a security module refused it; in a container, its seccomp profile must "
               "allow bpf and perf_event_open (docs/operations.md, \"Container\")";
    std::string hint =
        "tcpstatesd needs root, or CAP_BPF + CAP_PERFMON (Linux >= 5.8; CAP_SYS_ADMIN before)";
    if (geteuid() != 0) hint += "; it runs as uid " + std::to_string(geteuid()) + " now";
    return hint + "; also check kernel.unprivileged_bpf_disabled and kernel lockdown";
}

// A BTF file given by path, opened once without blocking: the configuration refused anything
// but a regular file, and a FIFO swapped in since must not hang the start. libbpf reads it
// through /proc/self/fd while `file` stays open, so the file checked is the file loaded.
struct BtfFile {
    Fd file;
    std::string path;  // what libbpf opens
};

BtfFile open_btf_file(const std::string& path) {
    Fd file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    const auto refuse = [&path](const std::string& reason) {
        return BpfError("BTF file " + path +
                        " (--btf.path / events.btf_path) not readable: " + reason +
                        "; give a raw BTF file for this kernel (as BTFHub provides) or "
                        "an ELF file with a .BTF section");
    };
    if (!file) throw refuse(std::strerror(errno));
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) throw refuse(std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw refuse("not a regular file");
    std::string through = "/proc/self/fd/" + std::to_string(file.get());
    return {std::move(file), std::move(through)};
}

// The BTF that the programs' field reads are relocated against must be there, or the load
// fails with a bare ENOENT: checked first, for an error line that says what to do.
void check_btf(const std::string& custom_path, const std::string& opened) {
    if (custom_path.empty()) {
        if (access(kBtfPath, R_OK) != 0)
            throw BpfError(std::string("kernel BTF not readable at ") + kBtfPath + ": " +
                           std::strerror(errno) +
                           "; pass --btf.path (or events.btf_path) with a BTF file for this "
                           "kernel (BTFHub provides them for distribution kernels), or use a "
                           "kernel built with CONFIG_DEBUG_INFO_BTF=y");
        return;
    }
    const std::unique_ptr<btf, decltype(&btf__free)> parsed(btf__parse(opened.c_str(), nullptr),
                                                            btf__free);
    if (!parsed) {
        const int err = errno;
        char reason[128];  // libbpf's own codes (e.g. a bad format) are beyond strerror's
        libbpf_strerror(err, reason, sizeof reason);
        throw BpfError("BTF file " + custom_path +
                       " (--btf.path / events.btf_path) is not BTF: " + reason +
                       "; give a raw BTF file for this kernel (as BTFHub provides) or an ELF "
                       "file with a .BTF section");
    }
}

// The transition programs to load, the first and the nested one (bpf/transitions.bpf.h says why
// two): by transport, and by whether the kernel's own BTF is used.
std::pair<bpf_program*, bpf_program*> transition_programs(tcpstates_bpf& skel, bool ring,
                                                          bool custom_btf) {
    auto& p = skel.progs;
    if (custom_btf)
        return ring ? std::pair{p.tcpstates_ringbuf_raw, p.tcpstates_ringbuf_raw_nested}
                    : std::pair{p.tcpstates_perfbuf_raw, p.tcpstates_perfbuf_raw_nested};
    return ring ? std::pair{p.tcpstates_ringbuf, p.tcpstates_ringbuf_nested}
                : std::pair{p.tcpstates_perfbuf, p.tcpstates_perfbuf_nested};
}

// The programs on the reset and retransmission tracepoints of one transport (bpf/packets.bpf.h),
// and which of them the options ask for.
std::vector<bpf_program*> packet_programs(tcpstates_bpf& skel, bool ring,
                                          const BpfOptions& options) {
    auto& p = skel.progs;
    std::vector<bpf_program*> chosen;
    if (options.resets) {
        chosen.push_back(ring ? p.tcpstates_reset_sent_ringbuf : p.tcpstates_reset_sent_perfbuf);
        chosen.push_back(ring ? p.tcpstates_reset_received_ringbuf
                              : p.tcpstates_reset_received_perfbuf);
    }
    if (options.retransmits) {
        chosen.push_back(ring ? p.tcpstates_retransmit_ringbuf : p.tcpstates_retransmit_perfbuf);
        chosen.push_back(ring ? p.tcpstates_retransmit_synack_ringbuf
                              : p.tcpstates_retransmit_synack_perfbuf);
    }
    return chosen;
}

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

// The number of arguments the kernel's tracepoint `name` passes its programs (tp_btf), from its
// BTF (typedef btf_trace_NAME -> pointer -> prototype (void *, the arguments)); 0 if unknown.
int tracepoint_arguments(const btf* vmlinux, const char* name) {
    if (!vmlinux) return 0;
    const int id = btf__find_by_name_kind(vmlinux, (std::string("btf_trace_") + name).c_str(),
                                          BTF_KIND_TYPEDEF);
    if (id < 0) return 0;
    const btf_type* pointer = btf__type_by_id(vmlinux, btf__type_by_id(vmlinux, id)->type);
    const btf_type* prototype = pointer ? btf__type_by_id(vmlinux, pointer->type) : nullptr;
    return prototype && btf_is_func_proto(prototype) ? btf_vlen(prototype) - 1 : 0;
}

uint64_t recursion_misses(const bpf_program* program) {
    return object_info<bpf_prog_info>(bpf_program__fd(program),
                                      std::string("reading the recursion misses of the program ") +
                                          bpf_program__name(program))
        .recursion_misses;
}

void set_or_fail(int err, const char* what) {
    if (err) throw_bpf_error(what, err);
}

// Installs a count table in slot 0 of its outer map.
void install_table(int outer_fd, int table_fd, const char* what) {
    const uint32_t slot = 0;
    if (bpf_map_update_elem(outer_fd, &slot, &table_fd, BPF_ANY) != 0)
        throw_bpf_error(std::string("installing the ") + what, errno);
}

}  // namespace

uint32_t tuple_table_entries(uint32_t tuples) {
    return tuples + 2;
}

void add_overflow_tuples(int table_fd) {
    const tcpstates_tuple_counts zero{};
    for (uint8_t ipv6 = 0; ipv6 < 2; ++ipv6) {
        tcpstates_tuple_key key{};
        key.ipv6 = ipv6;
        key.flags = TCPSTATES_TUPLE_OVERFLOW;
        if (bpf_map_update_elem(table_fd, &key, &zero, BPF_NOEXIST) != 0 && errno != EEXIST)
            throw_bpf_error("adding the overflow tuples to a tuple table", errno);
    }
}

[[noreturn]] void throw_bpf_error(const std::string& what, int err) {
    err = err < 0 ? -err : err;
    std::string message = what + ": " + std::strerror(err);
    switch (err) {
        case EPERM:
        case EACCES:
            message += " (" + privilege_hint() + ")";
            break;
        case ENOMEM:
            // Since Linux 5.11 the maps are charged to the memory cgroup, not RLIMIT_MEMLOCK.
            message +=
                " (the BPF maps' memory is charged to the daemon's memory cgroup: raise its limit "
                "(MemoryMax=, a container's memory limit) above what they take, "
                "docs/configuration.md, \"Kernel memory\"; or lower events.socket_table_size / "
                "the buffer sizes; before Linux 5.11: LimitMEMLOCK=infinity or `ulimit -l "
                "unlimited`)";
            break;
        case ENOENT:
        case ESRCH:
            message +=
                " (the kernel lacks the tracepoint sock:inet_sock_set_state or its BTF: "
                "Linux >= 5.13 built with CONFIG_DEBUG_INFO_BTF=y is required; or a tcp:* "
                "tracepoint of events.resets / events.retransmits, which can be set to false)";
            break;
        default:
            break;
    }
    throw BpfError(message);
}

BpfProgram::BpfProgram(const BpfOptions& options) {
    libbpf_set_print(route_libbpf_log);

    // Open until the programs are loaded (libbpf reads it at the load).
    const BtfFile btf_file = options.btf_path.empty() ? BtfFile{} : open_btf_file(options.btf_path);
    check_btf(options.btf_path, btf_file.path);
    if (options.socket_table_size == 0) throw BpfError("socket_table_size must be at least 1");

    transport_ = options.transport;
    const bool has_ring_buffer = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) == 1;
    if (transport_ == Transport::Auto)
        transport_ = has_ring_buffer ? Transport::RingBuffer : Transport::PerfBuffer;
    else if (transport_ == Transport::RingBuffer && !has_ring_buffer)
        throw BpfError(
            "transport ringbuf is not supported by this kernel (needs Linux >= 5.8): "
            "use transport auto or perfbuf");

    LIBBPF_OPTS(bpf_object_open_opts, open_options);
    if (!options.btf_path.empty()) open_options.btf_custom_path = btf_file.path.c_str();
    skel_.reset(tcpstates_bpf__open_opts(&open_options));
    if (!skel_) throw_bpf_error("opening the embedded BPF object", errno);

    event_details_ = options.event_details;
    skel_->rodata->event_details = options.event_details ? 1 : 0;
    const bool ring = transport_ == Transport::RingBuffer;
    const bool kernel_btf = options.btf_path.empty();
    // The raw tracepoint serves older kernels, whose verifier wants its hash maps preallocated.
    preallocated_ = !kernel_btf;
    // Destroyed sockets' records stay for the next socket at their address where a walk sweeps
    // the rest: the daemon's, which walks with the kernel's BTF (`trace` does not walk).
    skel_->rodata->keep_destroyed_records = !options.event_details && kernel_btf ? 1 : 0;
    std::tie(first_, nested_) = transition_programs(*skel_, ring, !kernel_btf);
    destroy_ = kernel_btf ? skel_->progs.tcpstates_destroy : skel_->progs.tcpstates_destroy_raw;
    destroy_nested_ = kernel_btf ? skel_->progs.tcpstates_destroy_nested
                                 : skel_->progs.tcpstates_destroy_raw_nested;
    // The packet programs attach as tp_btf: not with a BTF file.
    if (kernel_btf)
        packet_programs_ = packet_programs(*skel_, ring, options);
    else if (options.resets || options.retransmits)
        spdlog::warn(
            "resets and retransmissions are not counted with a BTF file (events.btf_path): their "
            "programs need the kernel's own BTF; set events.resets and events.retransmits to "
            "false to silence this");
    for (bpf_program* candidate = bpf_object__next_program(skel_->obj, nullptr); candidate;
         candidate = bpf_object__next_program(skel_->obj, candidate))
        bpf_program__set_autoload(
            candidate, candidate == first_ || candidate == nested_ || candidate == destroy_ ||
                           candidate == destroy_nested_ ||
                           std::find(packet_programs_.begin(), packet_programs_.end(), candidate) !=
                               packet_programs_.end());
    if (kernel_btf && (options.retransmits || options.resets)) {
        const BtfPtr vmlinux(btf__load_vmlinux_btf(), btf__free);
        // tcp:tcp_retransmit_skb's third argument, the transmission's result (Linux >= 6.15),
        // comes with attempts that failed, which retransmitted nothing.
        skel_->rodata->retransmit_reports_errors =
            tracepoint_arguments(vmlinux.get(), "tcp_retransmit_skb") >= 3 ? 1 : 0;
        // tcp:tcp_send_reset's third, enum sk_rst_reason (Linux >= 6.10), and its names.
        skel_->rodata->reset_reports_reason =
            tracepoint_arguments(vmlinux.get(), "tcp_send_reset") >= 3 ? 1 : 0;
        if (skel_->rodata->reset_reports_reason) reset_reasons_ = ResetReasons(vmlinux.get());
    }
    // The walk is a tracing program on the kernel's own BTF.
    bpf_program__set_autoload(skel_->progs.tcpstates_walk, kernel_btf);

    if (ring) {
        const long page = sysconf(_SC_PAGESIZE);
        if (!std::has_single_bit(options.ring_buffer_bytes) || options.ring_buffer_bytes < page)
            throw BpfError("ring buffer size " + std::to_string(options.ring_buffer_bytes) +
                           " must be a power of two and at least the page size (" +
                           std::to_string(page) + ")");
        set_or_fail(bpf_map__set_max_entries(skel_->maps.ring_events, options.ring_buffer_bytes),
                    "sizing the ring buffer");
        if (options.ring_buffer_wakeup_bytes >= options.ring_buffer_bytes)
            throw BpfError("the ring buffer wake-up threshold must be below its size");
        skel_->rodata->ringbuf_wakeup_bytes = options.ring_buffer_wakeup_bytes;
    } else {
        if (!std::has_single_bit(options.perf_buffer_pages))
            throw BpfError("perf buffer pages " + std::to_string(options.perf_buffer_pages) +
                           " must be a power of two");
        perf_buffer_pages_ = options.perf_buffer_pages;
        // Kernels without ring buffers cannot create the map: leave it out entirely.
        bpf_map__set_autocreate(skel_->maps.ring_events, false);
    }

    // The tables: sized, and allocated as used unless preallocated.
    const uint32_t no_prealloc = preallocated_ ? 0 : BPF_F_NO_PREALLOC;
    socket_table_capacity_ = options.socket_table_size;
    set_or_fail(bpf_map__set_max_entries(skel_->maps.socket_records, socket_table_capacity_),
                "sizing the socket table");
    set_or_fail(bpf_map__set_max_entries(skel_->maps.socket_tasks,
                                         options.event_details ? socket_table_capacity_ : 1),
                "sizing the socket owners' table");
    // New ports are added before old ones are removed (apply_filters): room for both lists.
    for (bpf_map* map : {skel_->maps.local_ports, skel_->maps.remote_ports})
        set_or_fail(bpf_map__set_max_entries(map, 2 * TCPSTATES_MAX_FILTER_PORTS),
                    "sizing the port filters");
    for (bpf_map* map : {skel_->maps.socket_records, skel_->maps.socket_tasks,
                         skel_->maps.listeners, skel_->maps.walked, skel_->maps.oldest})
        set_or_fail(bpf_map__set_map_flags(map, no_prealloc), "choosing a table's allocation");
    // The queues' tables and the list of destroyed sockets' entries serve only the walk, which
    // needs the kernel's BTF: without it (the preallocated tables) they would only take memory.
    for (bpf_map* map :
         {skel_->maps.listen_queues, skel_->maps.listen_drops, skel_->maps.listener_drops,
          skel_->maps.destinations, skel_->maps.destroyed_records}) {
        set_or_fail(bpf_map__set_map_flags(map, no_prealloc), "choosing a table's allocation");
        if (preallocated_) set_or_fail(bpf_map__set_max_entries(map, 1), "sizing a walk table");
    }
    // The count tables, installed once the programs are loaded; the first of each kind is also
    // the template its outer map is made for (tables must match it: type, sizes, flags, and
    // before Linux 5.10 max_entries). Creating them is part of loading: a failure reads so.
    const std::string loading =
        std::string("loading the BPF program (") + bpf_program__section_name(first_) + ")";
    first_tuple_table_ =
        create_hash_map("tuples", sizeof(tcpstates_tuple_key), sizeof(tcpstates_tuple_counts),
                        tuple_table_entries(options.tuple_table_size), preallocated_, loading);
    first_duration_table_ =
        create_hash_map("durations", sizeof(tcpstates_duration_key), sizeof(tcpstates_histogram),
                        std::max<uint32_t>(options.duration_table_size, 1), preallocated_, loading);
    native_table_capacity_ = std::max<uint32_t>(options.native_table_size, 1);
    first_native_table_ = create_hash_map("native", sizeof(tcpstates_native_key), sizeof(uint64_t),
                                          native_table_capacity_, preallocated_, loading);
    set_or_fail(bpf_map__set_inner_map_fd(skel_->maps.native_tables, first_native_table_.get()),
                "setting the native tables' template");
    set_or_fail(bpf_map__set_inner_map_fd(skel_->maps.tuple_tables, first_tuple_table_.get()),
                "setting the tuple tables' template");
    first_exemplar_table_ =
        create_hash_map("exemplars", sizeof(tcpstates_exemplar_key), sizeof(tcpstates_exemplar),
                        std::max<uint32_t>(options.exemplar_table_size, 1), preallocated_, loading);
    set_or_fail(bpf_map__set_inner_map_fd(skel_->maps.duration_tables, first_duration_table_.get()),
                "setting the duration tables' template");
    set_or_fail(bpf_map__set_inner_map_fd(skel_->maps.exemplar_tables, first_exemplar_table_.get()),
                "setting the exemplar tables' template");

    if (int err = tcpstates_bpf__load(skel_.get())) throw_bpf_error(loading, err);
    add_overflow_tuples(first_tuple_table_.get());
    install_table(bpf_map__fd(skel_->maps.tuple_tables), first_tuple_table_.get(), "tuple table");
    install_table(bpf_map__fd(skel_->maps.duration_tables), first_duration_table_.get(),
                  "duration table");
    install_table(bpf_map__fd(skel_->maps.native_tables), first_native_table_.get(),
                  "native table");
    install_table(bpf_map__fd(skel_->maps.exemplar_tables), first_exemplar_table_.get(),
                  "exemplar table");
    apply_filters(options.filters);
    apply_labels(options.labels);
    switch_bucket_bounds(options.duration_bounds_ns, options.handshake_rtt_bounds_ns,
                         options.native_schema);
    try {
        install_recursion_marks(bpf_program__fd(first_), bpf_program__fd(destroy_),
                                bpf_map__fd(skel_->maps.recursion_marks));
    } catch (const BpfError& e) {
        spdlog::warn(
            "the nested programs cannot see when the kernel skips the first ones ({}): on Linux "
            ">= 6.1 a transition that interrupts the first program on its CPU is lost, counted "
            "in tcpstatesd_events_lost_total{{reason=\"recursion\"}}",
            e.what());
    }
    if (int err = tcpstates_bpf__attach(skel_.get()))
        throw_bpf_error(
            packet_programs_.empty()
                ? "attaching to the tracepoints sock:inet_sock_set_state and tcp:tcp_destroy_sock"
                : "attaching to the tracepoints sock:inet_sock_set_state and tcp:tcp_destroy_sock, "
                  "tcp_send_reset, tcp_receive_reset, tcp_retransmit_skb, tcp_retransmit_synack",
            err);
}

BpfProgram::~BpfProgram() = default;

void BpfProgram::DestroySkeleton::operator()(tcpstates_bpf* skeleton) const {
    tcpstates_bpf__destroy(skeleton);
}

uint8_t BpfProgram::next_walk_generation() {
    skel_->bss->walk_generation = static_cast<uint8_t>(skel_->bss->walk_generation + 1);
    return skel_->bss->walk_generation;
}

uint64_t BpfProgram::walked_net() const {
    return skel_->bss->walked_net;
}

int BpfProgram::socket_records_fd() const {
    return bpf_map__fd(skel_->maps.socket_records);
}

int BpfProgram::stale_records_fd() const {
    return bpf_map__fd(skel_->maps.stale_records);
}

int BpfProgram::destroyed_records_fd() const {
    return bpf_map__fd(skel_->maps.destroyed_records);
}

int BpfProgram::events_map_fd() const {
    return bpf_map__fd(transport_ == Transport::RingBuffer ? skel_->maps.ring_events
                                                           : skel_->maps.perf_events);
}

int BpfProgram::tuple_tables_fd() const {
    return bpf_map__fd(skel_->maps.tuple_tables);
}
int BpfProgram::duration_tables_fd() const {
    return bpf_map__fd(skel_->maps.duration_tables);
}
int BpfProgram::native_tables_fd() const {
    return bpf_map__fd(skel_->maps.native_tables);
}
int BpfProgram::exemplar_tables_fd() const {
    return bpf_map__fd(skel_->maps.exemplar_tables);
}
int BpfProgram::durations_fd() const {
    return bpf_map__fd(skel_->maps.durations);
}
int BpfProgram::handshake_rtts_fd() const {
    return bpf_map__fd(skel_->maps.handshake_rtts);
}
int BpfProgram::handshake_rtt_unmeasured_fd() const {
    return bpf_map__fd(skel_->maps.handshake_rtt_unmeasured);
}
int BpfProgram::unknown_starts_fd() const {
    return bpf_map__fd(skel_->maps.unknown_starts);
}
int BpfProgram::walked_fd() const {
    return bpf_map__fd(skel_->maps.walked);
}
int BpfProgram::oldest_fd() const {
    return bpf_map__fd(skel_->maps.oldest);
}
tcpstates_walk_totals& BpfProgram::walk_totals() const {
    return skel_->bss->walk_totals;
}
int BpfProgram::listen_queues_fd() const {
    return bpf_map__fd(skel_->maps.listen_queues);
}
int BpfProgram::listen_drops_fd() const {
    return bpf_map__fd(skel_->maps.listen_drops);
}
int BpfProgram::listener_drops_fd() const {
    return bpf_map__fd(skel_->maps.listener_drops);
}
int BpfProgram::listeners_fd() const {
    return bpf_map__fd(skel_->maps.listeners);
}
int BpfProgram::destinations_fd() const {
    return bpf_map__fd(skel_->maps.destinations);
}
tcpstates_queue_walk_totals& BpfProgram::queue_walk_totals() const {
    return skel_->bss->queue_walk_totals;
}
void BpfProgram::set_ephemeral_range(uint16_t low, uint16_t high) {
    skel_->bss->ephemeral_low = low;
    skel_->bss->ephemeral_high = high;
}
bool BpfProgram::can_walk_sockets() const {
    return skel_->links.tcpstates_walk != nullptr;
}
bpf_link* BpfProgram::walk_link() const {
    return skel_->links.tcpstates_walk;
}

void BpfProgram::replace_ports(int map_fd, const std::vector<uint16_t>& old_ports,
                               const std::vector<uint16_t>& new_ports, const char* which,
                               std::vector<PortChange>& done) {
    const uint8_t allowed = 1;
    for (uint16_t port : new_ports) {
        if (std::binary_search(old_ports.begin(), old_ports.end(), port)) continue;
        if (bpf_map_update_elem(map_fd, &port, &allowed, BPF_ANY) != 0)
            throw_bpf_error(std::string("adding port ") + std::to_string(port) + " to the " +
                                which + " port filter",
                            errno);
        done.push_back({map_fd, port, true});
    }
    for (uint16_t port : old_ports) {
        if (std::binary_search(new_ports.begin(), new_ports.end(), port)) continue;
        if (bpf_map_delete_elem(map_fd, &port) != 0 && errno != ENOENT)
            throw_bpf_error(std::string("removing port ") + std::to_string(port) + " from the " +
                                which + " port filter",
                            errno);
        done.push_back({map_fd, port, false});
    }
}

void BpfProgram::apply_filters(const EventFilters& requested) {
    if (requested.family != 0 && requested.family != AF_INET && requested.family != AF_INET6)
        throw BpfError("unknown address family " + std::to_string(requested.family));
    for (const auto* ports : {&requested.local_ports, &requested.remote_ports})
        if (ports->size() > TCPSTATES_MAX_FILTER_PORTS)
            throw BpfError((ports == &requested.local_ports ? "local" : "remote") +
                           std::string(" port filter has ") + std::to_string(ports->size()) +
                           " ports; at most " + std::to_string(TCPSTATES_MAX_FILTER_PORTS) +
                           " are supported");
    EventFilters next = requested;
    for (auto* ports : {&next.local_ports, &next.remote_ports}) {
        std::sort(ports->begin(), ports->end());
        ports->erase(std::unique(ports->begin(), ports->end()), ports->end());
    }
    auto* bss = skel_->bss;
    const uint8_t local_switch = bss->filter_local_ports, remote_switch = bss->filter_remote_ports;
    std::vector<PortChange> done;
    try {
        // A switch goes off before its list is emptied and on after its list is filled, so
        // the programs never apply an enabled, empty or half-filled allow-list.
        if (next.local_ports.empty()) bss->filter_local_ports = 0;
        if (next.remote_ports.empty()) bss->filter_remote_ports = 0;
        replace_ports(bpf_map__fd(skel_->maps.local_ports), filters_.local_ports, next.local_ports,
                      "local", done);
        replace_ports(bpf_map__fd(skel_->maps.remote_ports), filters_.remote_ports,
                      next.remote_ports, "remote", done);
    } catch (const BpfError& failed) {
        // The maps have room for both lists (see the constructor), so only something outside
        // the daemon refuses an update (a security module, a frozen map): the filters in force
        // are restored, ports first, then the switches, before the error goes up.
        try {
            const uint8_t allowed = 1;
            // The removed ports back first, then the added ones out: no moment without a port
            // of the filters in force.
            for (bool added : {false, true})
                for (const PortChange& change : done) {
                    if (change.added != added) continue;
                    const int err =
                        added ? bpf_map_delete_elem(change.map_fd, &change.port)
                              : bpf_map_update_elem(change.map_fd, &change.port, &allowed, BPF_ANY);
                    if (err != 0)
                        throw_bpf_error(
                            "restoring port " + std::to_string(change.port) + " of a port filter",
                            errno);
                }
        } catch (const BpfError& restoring) {
            throw BpfError(std::string(failed.what()) +
                           "; restoring the filters in force failed too (" + restoring.what() +
                           "): restart the daemon to apply a known filter");
        }
        bss->filter_local_ports = local_switch;
        bss->filter_remote_ports = remote_switch;
        throw;
    }
    // Nothing below can fail: the filters are whole once the switches are set.
    if (!next.local_ports.empty()) bss->filter_local_ports = 1;
    if (!next.remote_ports.empty()) bss->filter_remote_ports = 1;
    bss->filter_family = static_cast<uint16_t>(next.family);
    filters_ = std::move(next);
}

void BpfProgram::set_exemplars(bool on) {
    skel_->bss->exemplars = on ? 1 : 0;
}

void BpfProgram::exemplar_tables_swapped() {
    __atomic_fetch_add(&skel_->bss->exemplar_generation, 1, __ATOMIC_RELEASE);
}

void BpfProgram::apply_labels(const TupleLabelSettings& labels) {
    auto* bss = skel_->bss;
    // `trace` shows the owner's cgroup: its records keep it whatever the labels.
    bss->label_cgroup = labels.cgroup || event_details_ ? 1 : 0;
    bss->label_port = labels.port ? 1 : 0;
    bss->duration_label_port = labels.duration_port ? 1 : 0;
    bss->duration_label_cgroup = labels.duration_cgroup ? 1 : 0;
    bss->handshake_rtt_label_port = labels.handshake_rtt_port ? 1 : 0;
    bss->handshake_rtt_label_cgroup = labels.handshake_rtt_cgroup ? 1 : 0;
    bss->port_listening = labels.listening ? 1 : 0;
    // Listed ports are set; others stay as the programs and walks found them (a port once
    // listened on stays a service port, so that a connection's transitions keep one tuple).
    for (uint16_t port : labels.ports)
        __atomic_fetch_or(&bss->service_ports[port / 64], uint64_t{1} << (port % 64),
                          __ATOMIC_RELAXED);
}

void BpfProgram::add_listening_ports(const uint64_t (&words)[65536 / 64]) {
    auto* bss = skel_->bss;
    if (!bss->port_listening) return;
    for (size_t i = 0; i < 65536 / 64; ++i)
        if (words[i]) __atomic_fetch_or(&bss->service_ports[i], words[i], __ATOMIC_RELAXED);
}

uint32_t BpfProgram::switch_bucket_bounds(const std::vector<uint64_t>& duration_bounds_ns,
                                          const std::vector<uint64_t>& handshake_rtt_bounds_ns,
                                          std::optional<int32_t> native_schema) {
    auto* bss = skel_->bss;
    const uint32_t next = (bss->bucket_generation + 1) & 1;
    const auto write = [](tcpstates_bucket_bounds& bounds, const std::vector<uint64_t>& ns) {
        const size_t count = std::min<size_t>(ns.size(), TCPSTATES_MAX_BUCKETS);
        std::copy_n(ns.begin(), count, bounds.bound_ns);
        bounds.count = static_cast<uint32_t>(count);
    };
    write(bss->bucket_bounds[next], duration_bounds_ns);
    write(bss->handshake_rtt_bounds[next], handshake_rtt_bounds_ns);
    tcpstates_native_bounds& native = bss->native_bounds[next];
    native.count = 0;
    if (native_schema) {
        const NativeBounds bounds = native_bounds(*native_schema);
        std::copy(bounds.bound_ns.begin(), bounds.bound_ns.end(), native.bound_ns);
        std::copy(bounds.cell_position.begin(), bounds.cell_position.end(), native.cell_position);
        native.cell_bits = bounds.cell_bits;
        native.first_index = bounds.first_index;
        native.count = static_cast<uint32_t>(bounds.bound_ns.size());
    }
    __atomic_store_n(&bss->bucket_generation, next, __ATOMIC_RELEASE);
    return next;
}

uint32_t BpfProgram::bucket_generation() const {
    return skel_->bss->bucket_generation & 1;
}

KernelCounters BpfProgram::read_counters() const {
    KernelCounters totals;
    const uint32_t cpus = possible_cpus();
    std::vector<uint64_t> per_cpu(size_t(TCPSTATES_COUNTER_MAX) * cpus);  // [counter][cpu]
    read_array(bpf_map__fd(skel_->maps.counters), "counters", 0, TCPSTATES_COUNTER_MAX,
               per_cpu.data());
    for (size_t i = 0; i < per_cpu.size(); ++i) totals.values[i / cpus] += per_cpu[i];
    return totals;
}

uint64_t BpfProgram::recursion_losses() const {
    // Misses first: each handled one follows its miss, so the handled count read afterwards
    // covers every miss already handled, and the difference never counts one in progress.
    const uint64_t first_misses = recursion_misses(first_);
    uint64_t packet_misses = 0;
    for (const bpf_program* program : packet_programs_) packet_misses += recursion_misses(program);
    const uint64_t handled = read_counters()[TCPSTATES_COUNTER_NESTED_HANDLED];
    const uint64_t losses = (first_misses > handled ? first_misses - handled : 0) + packet_misses;
    // A miss handled between the two reads makes the difference smaller than the last one:
    // a counter never goes down.
    std::lock_guard lock(losses_mutex_);
    recursion_losses_ = std::max(recursion_losses_, losses);
    return recursion_losses_;
}

uint64_t BpfProgram::leaked_records() const {
    // As recursion_losses(): misses first, then what the nested program made up for. A socket
    // without a record that the first program missed counts too: an upper bound.
    const uint64_t misses = recursion_misses(destroy_);
    const uint64_t handled = read_counters()[TCPSTATES_COUNTER_NESTED_DESTROYED];
    std::lock_guard lock(losses_mutex_);
    leaked_records_ = std::max(leaked_records_, misses > handled ? misses - handled : 0);
    return leaked_records_;
}

}  // namespace tcpstatesd

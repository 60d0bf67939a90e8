#include "kernel/bpf_program.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/fd.hpp"
#include "runtime/capabilities.hpp"
#include "tcpstates.skel.h"

namespace tcpstatesd {

namespace {

constexpr const char* kBtfPath = "/sys/kernel/btf/vmlinux";

int route_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
    char line[1024];
    int n = vsnprintf(line, sizeof line, format, args);
    std::string_view text(line, n > 0 ? std::min<size_t>(n, sizeof line - 1) : 0);
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

// Turns a failed libbpf call into one line: what failed, why, and what to do.
[[noreturn]] void fail(const std::string& what, int err) {
    err = err < 0 ? -err : err;
    std::string message = what + ": " + std::strerror(err);
    switch (err) {
        case EPERM:
        case EACCES:
            message += " (" + privilege_hint() + ")";
            break;
        case ENOMEM:
            message +=
                " (locked memory limit too low on kernels < 5.11: set LimitMEMLOCK=infinity or "
                "`ulimit -l unlimited`; or lower socket_table_size / the buffer sizes)";
            break;
        case ENOENT:
        case ESRCH:
            message +=
                " (the kernel lacks the tracepoint sock:inet_sock_set_state or its BTF: "
                "Linux >= 5.14 built with CONFIG_DEBUG_INFO_BTF=y is required; or a tcp:* "
                "tracepoint of events.resets / events.retransmits, which can be set to false)";
            break;
        default:
            break;
    }
    throw BpfError(message);
}

// The BTF that the program's field reads are relocated against must be there, or the load
// fails with a bare ENOENT: checked first, for an error line that says what to do.
void check_btf(const std::string& custom_path) {
    if (custom_path.empty()) {
        if (access(kBtfPath, R_OK) != 0)
            throw BpfError(std::string("kernel BTF not readable at ") + kBtfPath + ": " +
                           std::strerror(errno) +
                           "; pass --btf.path (or events.btf_path) with a BTF file for this "
                           "kernel (BTFHub provides them for distribution kernels), or use a "
                           "kernel built with CONFIG_DEBUG_INFO_BTF=y");
        return;
    }
    const std::unique_ptr<btf, decltype(&btf__free)> parsed(
        btf__parse(custom_path.c_str(), nullptr), btf__free);
    if (!parsed) {
        const int err = errno;
        const bool unreadable = err == ENOENT || err == EACCES || err == EISDIR;
        char reason[128];  // libbpf's own codes (e.g. a bad format) are beyond strerror's
        libbpf_strerror(err, reason, sizeof reason);
        throw BpfError("BTF file " + custom_path + " (--btf.path / events.btf_path) " +
                       (unreadable ? "not readable: " : "is not BTF: ") + reason +
                       "; give a raw BTF file for this kernel (as BTFHub provides) or an ELF "
                       "file with a .BTF section");
    }
}

// The pair of tracepoint programs to load (bpf/tcpstates.bpf.c, "Nested transitions"): by
// transport, and by whether the kernel's own BTF is used.
std::pair<bpf_program*, bpf_program*> entry_programs(tcpstates_bpf& skel, bool ring,
                                                     bool custom_btf) {
    auto& p = skel.progs;
    if (custom_btf)
        return ring ? std::pair{p.tcpstates_ringbuf_raw, p.tcpstates_ringbuf_raw_nested}
                    : std::pair{p.tcpstates_perfbuf_raw, p.tcpstates_perfbuf_raw_nested};
    return ring ? std::pair{p.tcpstates_ringbuf, p.tcpstates_ringbuf_nested}
                : std::pair{p.tcpstates_perfbuf, p.tcpstates_perfbuf_nested};
}

// The programs on the reset and retransmission tracepoints of one transport (bpf/tcpstates.bpf.c,
// "Resets and retransmissions"), and which of them the options ask for.
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

// Whether the kernel's tcp:tcp_retransmit_skb passes the transmission's result (a third
// argument, Linux >= 6.15), which it then fires for failed attempts too.
bool retransmit_reports_errors() {
    const std::unique_ptr<btf, decltype(&btf__free)> vmlinux(btf__load_vmlinux_btf(), btf__free);
    if (!vmlinux) return false;
    const int id =
        btf__find_by_name_kind(vmlinux.get(), "btf_trace_tcp_retransmit_skb", BTF_KIND_TYPEDEF);
    if (id < 0) return false;
    // typedef -> pointer -> function prototype (void *, sock, sk_buff[, int err])
    const btf_type* pointer =
        btf__type_by_id(vmlinux.get(), btf__type_by_id(vmlinux.get(), id)->type);
    const btf_type* prototype = pointer ? btf__type_by_id(vmlinux.get(), pointer->type) : nullptr;
    return prototype && btf_is_func_proto(prototype) && btf_vlen(prototype) >= 4;
}

// Sums a per-CPU array of `writers` x `slots` 64-bit values over CPUs and writers.
template <typename Value, size_t Slots>
std::array<Value, Slots> sum_per_cpu(int map_fd, uint32_t writers) {
    std::array<Value, Slots> totals{};
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) throw BpfError("counting the possible CPUs: " + std::string(strerror(-cpus)));
    std::vector<Value> per_cpu(cpus);
    for (uint32_t writer = 0; writer < writers; ++writer)
        for (uint32_t slot = 0; slot < Slots; ++slot) {
            const uint32_t key = writer * Slots + slot;
            if (bpf_map_lookup_elem(map_fd, &key, per_cpu.data()) != 0)
                throw BpfError("reading the program's counters: " + std::string(strerror(errno)));
            for (Value v : per_cpu) totals[slot] += v;
        }
    return totals;
}

// The cookie of the caller's network namespace (Linux >= 5.14): what the programs compare a
// socket's namespace with.
uint64_t own_network_namespace_cookie() {
    const Fd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    uint64_t cookie = 0;
    socklen_t size = sizeof cookie;
    if (!probe || getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &size) != 0)
        throw BpfError(
            "reading this network namespace's cookie (SO_NETNS_COOKIE, Linux >= 5.14): " +
            std::string(strerror(errno)));
    return cookie;
}

bool is_power_of_two(uint64_t v) {
    return v && !(v & (v - 1));
}

}  // namespace

int64_t total_sockets(const SocketCounts& counts) {
    int64_t sum = 0;
    for (const auto& family : counts)
        for (int64_t n : family) sum += n;
    return sum;
}

bool kernel_has_ring_buffer() {
    return libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) == 1;
}

BpfProgram::BpfProgram(const BpfOptions& options) {
    libbpf_set_print(route_libbpf_log);

    check_btf(options.btf_path);
    if (options.socket_table_size == 0) throw BpfError("socket_table_size must be at least 1");

    transport_ = options.transport;
    if (transport_ == Transport::Auto)
        transport_ = kernel_has_ring_buffer() ? Transport::RingBuffer : Transport::PerfBuffer;
    else if (transport_ == Transport::RingBuffer && !kernel_has_ring_buffer())
        throw BpfError(
            "transport ringbuf is not supported by this kernel (needs Linux >= 5.8): "
            "use transport auto or perfbuf");

    LIBBPF_OPTS(bpf_object_open_opts, open_options);
    if (!options.btf_path.empty()) open_options.btf_custom_path = options.btf_path.c_str();
    skel_.reset(tcpstates_bpf__open_opts(&open_options));
    if (!skel_) fail("opening the embedded BPF object", errno);

    event_details_ = options.event_details;
    skel_->rodata->event_details = options.event_details ? 1 : 0;
    const bool ring = transport_ == Transport::RingBuffer;
    const bool socket_storage = options.btf_path.empty();
    std::tie(first_, nested_) = entry_programs(*skel_, ring, !socket_storage);
    // The packet programs read socket storage and attach as tp_btf: not with a BTF file.
    if (socket_storage)
        packet_programs_ = packet_programs(*skel_, ring, options);
    else if (options.resets || options.retransmits)
        spdlog::warn(
            "resets and retransmissions are not counted with a BTF file (events.btf_path): their "
            "programs need the kernel's own BTF; set events.resets and events.retransmits to "
            "false to silence this");
    for (bpf_program* candidate = bpf_object__next_program(skel_->obj, nullptr); candidate;
         candidate = bpf_object__next_program(skel_->obj, candidate))
        bpf_program__set_autoload(
            candidate, candidate == first_ || candidate == nested_ ||
                           std::find(packet_programs_.begin(), packet_programs_.end(), candidate) !=
                               packet_programs_.end());
    if (options.retransmits && socket_storage)
        skel_->rodata->retransmit_reports_errors = retransmit_reports_errors() ? 1 : 0;
    // The walk is a tracing program on the kernel's own BTF, like socket storage. It counts the
    // sockets of this network namespace; the tracepoint programs count the others.
    bpf_program__set_autoload(skel_->progs.tcpstates_walk, socket_storage);
    if (socket_storage) skel_->rodata->walked_netns_cookie = own_network_namespace_cookie();
    if (ring) {
        const long page = sysconf(_SC_PAGESIZE);
        if (!is_power_of_two(options.ring_buffer_bytes) || options.ring_buffer_bytes < page)
            throw BpfError("ring buffer size " + std::to_string(options.ring_buffer_bytes) +
                           " must be a power of two and at least the page size (" +
                           std::to_string(page) + ")");
        if (int err = bpf_map__set_max_entries(skel_->maps.ring_events, options.ring_buffer_bytes))
            fail("sizing the ring buffer", err);
        if (options.ring_buffer_wakeup_bytes >= options.ring_buffer_bytes)
            throw BpfError("the ring buffer wake-up threshold must be below its size");
        skel_->rodata->ringbuf_wakeup_bytes = options.ring_buffer_wakeup_bytes;
    } else {
        if (!is_power_of_two(options.perf_buffer_pages))
            throw BpfError("perf buffer pages " + std::to_string(options.perf_buffer_pages) +
                           " must be a power of two");
        perf_buffer_pages_ = options.perf_buffer_pages;
        // Kernels without ring buffers cannot create the map: leave it out entirely.
        bpf_map__set_autocreate(skel_->maps.ring_events, false);
    }
    if (!socket_storage) {
        if (int err = bpf_map__set_max_entries(skel_->maps.socket_table, options.socket_table_size))
            fail("sizing the socket table", err);
        socket_table_capacity_ = options.socket_table_size;
    }

    if (int err = tcpstates_bpf__load(skel_.get()))
        fail(std::string("loading the BPF program (") + bpf_program__section_name(first_) + ")",
             err);
    apply_filters(options.filters);
    if (int err = tcpstates_bpf__attach(skel_.get()))
        fail(packet_programs_.empty()
                 ? "attaching to the tracepoint sock:inet_sock_set_state"
                 : "attaching to the tracepoints sock:inet_sock_set_state and tcp:tcp_send_reset, "
                   "tcp_receive_reset, tcp_retransmit_skb, tcp_retransmit_synack",
             err);
}

void BpfProgram::DestroySkeleton::operator()(tcpstates_bpf* skeleton) const {
    tcpstates_bpf__destroy(skeleton);
}

int BpfProgram::events_map_fd() const {
    return bpf_map__fd(transport_ == Transport::RingBuffer ? skel_->maps.ring_events
                                                           : skel_->maps.perf_events);
}

void BpfProgram::replace_ports(int map_fd, const std::vector<uint16_t>& old_ports,
                               const std::vector<uint16_t>& new_ports, const char* which) {
    if (new_ports.size() > TCPSTATES_MAX_FILTER_PORTS)
        throw BpfError(std::string(which) + " port filter has " + std::to_string(new_ports.size()) +
                       " ports; at most " + std::to_string(TCPSTATES_MAX_FILTER_PORTS) +
                       " are supported");
    const uint8_t allowed = 1;
    for (uint16_t port : new_ports)
        if (bpf_map_update_elem(map_fd, &port, &allowed, BPF_ANY) != 0)
            fail(std::string("adding port ") + std::to_string(port) + " to the " + which +
                     " port filter",
                 errno);
    for (uint16_t port : old_ports)
        if (std::find(new_ports.begin(), new_ports.end(), port) == new_ports.end() &&
            bpf_map_delete_elem(map_fd, &port) != 0 && errno != ENOENT)
            fail(std::string("removing port ") + std::to_string(port) + " from the " + which +
                     " port filter",
                 errno);
}

void BpfProgram::apply_filters(const EventFilters& requested) {
    if (requested.family != 0 && requested.family != AF_INET && requested.family != AF_INET6)
        throw BpfError("unknown address family " + std::to_string(requested.family));
    EventFilters next = requested;
    std::sort(next.local_ports.begin(), next.local_ports.end());
    std::sort(next.remote_ports.begin(), next.remote_ports.end());
    auto* bss = skel_->bss;
    // A switch goes off before its list is emptied and on after its list is filled, so the
    // program never applies an enabled, empty or half-filled allow-list.
    if (next.local_ports.empty()) bss->filter_local_ports = 0;
    if (next.remote_ports.empty()) bss->filter_remote_ports = 0;
    replace_ports(bpf_map__fd(skel_->maps.local_ports), filters_.local_ports, next.local_ports,
                  "local");
    replace_ports(bpf_map__fd(skel_->maps.remote_ports), filters_.remote_ports, next.remote_ports,
                  "remote");
    if (!next.local_ports.empty()) bss->filter_local_ports = 1;
    if (!next.remote_ports.empty()) bss->filter_remote_ports = 1;
    bss->filter_family = static_cast<uint16_t>(next.family);
    std::lock_guard lock(filters_mutex_);
    filters_ = std::move(next);
}

EventFilters BpfProgram::filters() const {
    std::lock_guard lock(filters_mutex_);
    return filters_;
}

KernelCounters BpfProgram::read_counters() const {
    KernelCounters totals;
    const auto sums = sum_per_cpu<uint64_t, TCPSTATES_COUNTER_MAX>(
        bpf_map__fd(skel_->maps.counters), TCPSTATES_WRITERS);
    std::copy(sums.begin(), sums.end(), totals.values);
    return totals;
}

namespace {

uint64_t recursion_misses(const bpf_program* program) {
    bpf_prog_info info{};
    uint32_t size = sizeof info;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &size) != 0)
        throw BpfError(std::string("reading the recursion misses of the program ") +
                       bpf_program__name(program) + ": " + strerror(errno));
    return info.recursion_misses;
}

}  // namespace

uint64_t BpfProgram::recursion_losses(const KernelCounters& counters) const {
    const uint64_t nested_runs = counters[TCPSTATES_COUNTER_NESTED_RUNS];
    const uint64_t first_misses = recursion_misses(first_);
    uint64_t losses = first_misses > nested_runs ? first_misses - nested_runs : 0;
    // Nothing makes up for a packet program's miss.
    for (const bpf_program* program : packet_programs_) losses += recursion_misses(program);
    return losses;
}

SocketCounts BpfProgram::socket_counts() const {
    const auto sums = sum_per_cpu<int64_t, TCPSTATES_SOCKET_COUNT_SLOTS>(
        bpf_map__fd(skel_->maps.socket_counts), TCPSTATES_WRITERS);
    SocketCounts counts{};
    for (int ipv6 = 0; ipv6 < 2; ++ipv6)
        for (uint32_t state = 0; state < TCPSTATES_STATE_SLOTS; ++state)
            counts[ipv6][state] = sums[tcpstates_socket_count_slot(ipv6, state)];
    return counts;
}

bool BpfProgram::can_walk_sockets() const {
    return skel_->links.tcpstates_walk != nullptr;
}

namespace {

// Everything one run of an iterator writes. Throws BpfError.
std::string read_iterator(bpf_link* link, const char* what) {
    const Fd walk(bpf_iter_create(bpf_link__fd(link)));
    if (!walk) throw BpfError(std::string("starting a walk of ") + what + ": " + strerror(errno));
    std::string out;
    char buffer[1 << 16];
    for (;;) {
        const ssize_t n = read(walk.get(), buffer, sizeof buffer);
        if (n == 0) return out;
        // EAGAIN: the kernel pauses a read that visited a million sockets without output;
        // reading again goes on from there.
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) throw BpfError(std::string("walking ") + what + ": " + strerror(errno));
        out.append(buffer, static_cast<size_t>(n));
    }
}

}  // namespace

SocketWalk BpfProgram::walk_sockets(bool details) const {
    if (!can_walk_sockets()) throw BpfError("walking the TCP sockets needs the kernel's BTF");
    std::lock_guard lock(walk_mutex_);
    std::memset(&skel_->bss->walk_counts, 0, sizeof skel_->bss->walk_counts);
    skel_->bss->walk_details = details ? 1 : 0;
    const std::string out = read_iterator(skel_->links.tcpstates_walk, "the TCP sockets");
    // The counts come last, after the detailed walk's sockets.
    tcpstates_walk_counts counts{};
    if (out.size() < sizeof counts ||
        (out.size() - sizeof counts) % sizeof(tcpstates_walked_socket) != 0)
        throw BpfError("walking the TCP sockets: the walk ended without its counts");
    std::memcpy(&counts, out.data() + out.size() - sizeof counts, sizeof counts);

    SocketWalk result;
    for (int ipv6 = 0; ipv6 < 2; ++ipv6)
        for (uint32_t state = 0; state < TCPSTATES_STATE_SLOTS; ++state)
            result.sockets[ipv6][state] =
                static_cast<int64_t>(counts.sockets[tcpstates_socket_count_slot(ipv6, state)]);
    static_assert(sizeof result.listening_ports == sizeof counts.listening_ports);
    std::memcpy(result.listening_ports, counts.listening_ports, sizeof result.listening_ports);
    result.detailed.resize((out.size() - sizeof counts) / sizeof(tcpstates_walked_socket));
    if (!result.detailed.empty())  // data() may be null
        std::memcpy(result.detailed.data(), out.data(),
                    result.detailed.size() * sizeof(tcpstates_walked_socket));
    return result;
}

}  // namespace tcpstatesd

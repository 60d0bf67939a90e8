#include "labels/socket_labels.hpp"

#include <charconv>
#include <string>

namespace tcpstatesd {

namespace {

// cgroup ids remembered between two walks of the cgroup file system.
constexpr size_t kMaxCachedCgroups = 4096;
// How often a full cgroup label may walk the file system to find removed cgroups.
constexpr std::chrono::seconds kCgroupRefresh{1};

// What service_port() needs of a walked socket.
tcpstates_transition walked_transition(const tcpstates_walked_socket& socket) {
    tcpstates_transition t{};
    t.origin = socket.origin;
    t.lport = socket.lport;
    t.rport = socket.rport;
    return t;
}

}  // namespace

uint16_t service_port(const tcpstates_transition& t, bool listening,
                      const std::function<bool(uint16_t)>& is_service) {
    switch (t.origin) {
        case TCPSTATES_ORIGIN_ACTIVE:
            return t.rport != 0 && is_service(t.rport) ? t.rport : 0;
        case TCPSTATES_ORIGIN_LISTENER:
        case TCPSTATES_ORIGIN_PASSIVE:
            return t.lport != 0 && (listening || is_service(t.lport)) ? t.lport : 0;
        default:
            if (t.lport != 0 && is_service(t.lport)) return t.lport;
            return t.rport != 0 && is_service(t.rport) ? t.rport : 0;
    }
}

SocketLabels::SocketLabels(const LabelsConfig& config, CgroupNames& cgroups,
                           ListeningPorts& listening)
    : cgroup_names_(cgroups),
      listening_(listening),
      ports_({"other"}, config.port.max_values),
      cgroups_({"other", std::string(kUnknownCgroup)}, config.cgroup.max_values) {
    port_index_.fill(kNotCached);
    apply(config);
}

void SocketLabels::configure(const LabelsConfig& config) {
    std::lock_guard lock(mutex_);
    apply(config);
}

void SocketLabels::admit_listening_ports() {
    std::lock_guard lock(mutex_);
    if (!config_.port.listening || !config_.port.families.any()) return;
    for (uint32_t port = 1; port < 65536 && ports_.admitted() < config_.port.max_values; ++port)
        if (listening_.listened_on_now(static_cast<uint16_t>(port)) &&
            port_index_[port] == kNotCached)
            port_index_[port] = ports_.admit(std::to_string(port), events_).index;
}

void SocketLabels::apply(const LabelsConfig& config) {
    config_ = config;
    listed_.fill(false);
    for (uint16_t port : config.port.ports) listed_[port] = true;
    ports_.set_limit(config.port.max_values);
    cgroups_.set_limit(config.cgroup.max_values);
    mark_gone_ports();
}

void SocketLabels::mark_gone_ports() {
    ports_.mark_gone([this](std::string_view name) {
        uint16_t port = 0;
        std::from_chars(name.data(), name.data() + name.size(), port);
        return !listed_[port] && !listening_.listened_on_now(port);
    });
}

bool SocketLabels::is_service(uint16_t port) const {
    return listed_[port] || (config_.port.listening && listening_.seen(port));
}

SocketLabels::Values SocketLabels::of(const tcpstates_transition& t) {
    std::lock_guard lock(mutex_);
    ++events_;
    Values values;
    if (config_.port.families.any()) port_value(t, values);
    if (config_.cgroup.families.any()) cgroup_value(t.cgroup_id, values);
    return values;
}

void SocketLabels::port_value(const tcpstates_transition& t, Values& values) {
    if (t.origin == TCPSTATES_ORIGIN_LISTENER || t.origin == TCPSTATES_ORIGIN_PASSIVE) {
        // A listener's port listens from now on, in whatever network namespace.
        if (t.lport != 0 && t.new_state != TCPSTATES_CLOSE) listening_.add(t.lport);
    }
    if (const uint64_t walks = listening_.walks(); walks != listening_walks_seen_) {
        listening_walks_seen_ = walks;
        mark_gone_ports();
    }
    const uint16_t port =
        service_port(t, config_.port.listening, [this](uint16_t p) { return is_service(p); });
    if (port == 0) return;
    if (port_index_[port] != kNotCached) {
        ports_.touch(port_index_[port], events_);
        values.port = port_index_[port];
        return;
    }
    const auto admission = ports_.admit(std::to_string(port), events_);
    if (admission.refused) {
        values.port_refused = true;
        return;
    }
    if (admission.evicted) evicted(Label::Port, admission.index);
    port_index_[port] = admission.index;
    values.port = admission.index;
    values.admitted = true;
}

void SocketLabels::cgroup_value(uint64_t cgroup_id, Values& values) {
    if (cgroup_id == 0) {
        values.cgroup = cgroups_.admit(kUnknownCgroup, events_).index;
        return;
    }
    sync_with_cgroup_walks();
    if (cgroup_index_.size() >= kMaxCachedCgroups) cgroup_index_.clear();
    if (auto cached = cgroup_index_.find(cgroup_id); cached != cgroup_index_.end()) {
        if (cached->second == kRefused) {
            values.cgroup_refused = true;
            return;
        }
        cgroups_.touch(cached->second, events_);
        values.cgroup = cached->second;
        return;
    }
    auto admission = admit_cgroup(cgroup_id);
    // Full: a cgroup removed since the last walk may make room, found by walking again, at
    // most once per kCgroupRefresh.
    if (admission.refused && cgroup_names_.refresh(kCgroupRefresh))
        admission = admit_cgroup(cgroup_id);
    if (admission.refused) {
        values.cgroup_refused = true;
        cgroup_index_.emplace(cgroup_id, kRefused);
        return;
    }
    if (admission.evicted) evicted(Label::Cgroup, admission.index);
    cgroup_index_.emplace(cgroup_id, admission.index);
    values.cgroup = admission.index;
    values.admitted = true;
}

void SocketLabels::sync_with_cgroup_walks() {
    if (cgroup_names_.walks() == cgroup_walks_seen_) return;
    // A new walk: cached ids may be stale, and removed cgroups' names can make room.
    cgroup_index_.clear();
    cgroup_walks_seen_ = cgroup_names_.walks();
    cgroups_.mark_gone([this](std::string_view name) { return !cgroup_names_.exists(name); });
}

LabelValues::Admission SocketLabels::admit_cgroup(uint64_t cgroup_id) {
    const auto path = cgroup_names_.path(cgroup_id);  // may walk
    sync_with_cgroup_walks();
    return cgroups_.admit(path ? cgroup_display_name(*path) : std::string(kUnknownCgroup), events_);
}

void SocketLabels::evicted(Label label, uint32_t index) {
    if (label == Label::Port) {
        for (auto& cached : port_index_)
            if (cached == index) cached = kNotCached;
    } else {
        std::erase_if(cgroup_index_, [index](const auto& entry) { return entry.second == index; });
    }
    if (on_eviction_) on_eviction_(label, index);
}

LabelledFamilies SocketLabels::port_families() const {
    std::lock_guard lock(mutex_);
    return config_.port.families;
}

LabelledFamilies SocketLabels::cgroup_families() const {
    std::lock_guard lock(mutex_);
    return config_.cgroup.families;
}

SocketLabels::WalkedLabels SocketLabels::label_walked(
    const std::vector<tcpstates_walked_socket>& sockets) {
    WalkedLabels out;
    out.values.resize(sockets.size());
    // Array and hash lookups per socket, under the lock the event path takes per event: about
    // 10 ns a socket, a few ms at hundreds of thousands.
    std::lock_guard lock(mutex_);
    const bool by_port = config_.port.families.sockets;
    const bool by_cgroup = config_.cgroup.families.sockets;
    std::unordered_map<uint64_t, uint32_t> cgroup_index;  // this walk's ids
    for (size_t i = 0; i < sockets.size(); ++i) {
        const tcpstates_walked_socket& socket = sockets[i];
        Values& values = out.values[i];
        if (by_port) {
            const uint16_t port = service_port(walked_transition(socket), config_.port.listening,
                                               [this](uint16_t p) { return is_service(p); });
            if (port != 0 && port_index_[port] == kNotCached) {
                const auto admission = ports_.admit(std::to_string(port), events_, false);
                if (!admission.refused) port_index_[port] = admission.index;
            }
            if (port != 0 && port_index_[port] != kNotCached) values.port = port_index_[port];
        }
        if (by_cgroup) {
            auto [known, inserted] =
                cgroup_index.try_emplace(socket.cgroup_id, LabelValues::kOther);
            if (inserted) known->second = walked_cgroup_value(socket.cgroup_id);
            values.cgroup = known->second;
        }
    }
    for (uint32_t i = 0; i < ports_.size(); ++i) out.port_names.emplace_back(ports_.name(i));
    for (uint32_t i = 0; i < cgroups_.size(); ++i) out.cgroup_names.emplace_back(cgroups_.name(i));
    return out;
}

uint32_t SocketLabels::walked_cgroup_value(uint64_t cgroup_id) {
    if (cgroup_id == 0) return cgroups_.find(kUnknownCgroup);
    if (auto cached = cgroup_index_.find(cgroup_id);
        cached != cgroup_index_.end() && cached->second != kRefused)
        return cached->second;
    // The last walk's names only: no file system walk on a scrape's thread.
    if (auto path = cgroup_names_.known_path(cgroup_id))
        return cgroups_.admit(cgroup_display_name(*path), events_, false).index;
    return cgroups_.find(kUnknownCgroup);
}

}  // namespace tcpstatesd

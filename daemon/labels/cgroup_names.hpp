// Names of cgroup v2 ids, as the `cgroup` label and `trace --cgroup` show them. The kernel
// programs record a socket owner's cgroup id (the cgroup directory's inode number); the
// cgroup2 file system is read to name it: one walk of its directories per id not seen before,
// never a system call per event.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace tcpstatesd {

// The mount point of the cgroup2 file system in a /proc/self/mountinfo text: "/sys/fs/cgroup"
// on a unified host, "/sys/fs/cgroup/unified" in systemd's hybrid layout. nullopt if none.
std::optional<std::string> find_cgroup2_mount(std::string_view mountinfo);

// The readable name of a cgroup path (relative to the mount, "/" for the root): its innermost
// systemd unit that runs processes (the last component ending in .service or .scope, such as
// "nginx.service" or a container's "docker-<id>.scope"), else the path itself.
std::string cgroup_display_name(std::string_view path);

class CgroupNames {
public:
    // root: the cgroup2 mount point; empty for the one in /proc/self/mountinfo (if none, every
    // lookup fails).
    explicit CgroupNames(std::string root = {});

    // The cgroup's path relative to the mount ("/system.slice/nginx.service"), or nullopt if
    // there is no such cgroup (removed, or outside this cgroup namespace). A miss walks the
    // file system again, once per id: an id missing after that walk is not looked for again.
    std::optional<std::string> path(uint64_t id);

    // The path as of the last walk, without walking: nullopt if the id was not found then.
    std::optional<std::string> known_path(uint64_t id) const;
    // Walks the file system again if the last walk is at least `age` old; returns whether it
    // did. For finding removed cgroups when nothing else would walk.
    bool refresh(std::chrono::steady_clock::duration age);
    // Whether a cgroup with this display name existed at the last walk.
    bool exists(std::string_view display_name) const;
    // Walks of the file system so far: a lookup cache keyed by id is stale after one.
    uint64_t walks() const { return walks_; }

private:
    void walk();

    std::string root_;
    std::unordered_map<uint64_t, std::string> paths_;
    std::unordered_set<std::string> display_names_;
    std::unordered_set<uint64_t> missing_;  // ids a walk did not find
    uint64_t walks_ = 0;
    std::chrono::steady_clock::time_point last_walk_{};
};

}  // namespace tcpstatesd

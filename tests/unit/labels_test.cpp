// The `port` and `cgroup` labels' pure logic: naming cgroups, the bounded value sets, the
// service port rule, and the tuples' values (with a directory tree standing in for the cgroup2
// file system: a directory's inode number is its id, as for cgroups).
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "labels/cgroup_names.hpp"
#include "labels/label_values.hpp"
#include "labels/tuple_labels.hpp"
#include "tcpstates.h"
#include "temp_dir.hpp"

using namespace tcpstatesd;
using tcpstatesd::test::TempDir;

namespace {

uint64_t inode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

LabelsConfig config_with(std::vector<uint16_t> ports, bool listening, uint32_t max_ports,
                         uint32_t max_cgroups) {
    LabelsConfig config;
    config.port.ports = std::move(ports);
    config.port.listening = listening;
    config.port.max_values = max_ports;
    config.cgroup.max_values = max_cgroups;
    return config;
}

}  // namespace

TEST_CASE("labels: a cgroup is named by its innermost service or scope, else its path") {
    CHECK(cgroup_display_name("/system.slice/nginx.service") == "nginx.service");
    CHECK(cgroup_display_name("/system.slice/foo.service/payload") == "foo.service");
    CHECK(cgroup_display_name("/user.slice/user-1000.slice/session-3.scope") == "session-3.scope");
    CHECK(cgroup_display_name("/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope") ==
          "cri-containerd-ab.scope");
    CHECK(cgroup_display_name("/system.slice") == "/system.slice");
    CHECK(cgroup_display_name("/tcpstatesd-test/server") == "/tcpstatesd-test/server");
    CHECK(cgroup_display_name("/") == "/");
}

TEST_CASE("labels: the cgroup2 mount is found in mountinfo, hybrid or unified") {
    const std::string hybrid =
        "24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
        "35 24 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
        "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
        "37 35 0:32 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n";
    CHECK(find_cgroup2_mount(hybrid) == "/sys/fs/cgroup/unified");
    CHECK(find_cgroup2_mount("30 24 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n") ==
          "/sys/fs/cgroup");
    CHECK(find_cgroup2_mount("30 24 0:26 / /mnt/c\\040g rw - cgroup2 none rw\n") == "/mnt/c g");
    CHECK_FALSE(find_cgroup2_mount("24 30 0:22 / /sys rw - sysfs sysfs rw\n").has_value());
}

TEST_CASE("labels: cgroup ids are named by walking the file system once per new id") {
    TempDir root;
    std::filesystem::create_directories(root.path() + "/system.slice/nginx.service");
    CgroupNames names(root.path());
    const uint64_t nginx = inode_of(root.path() + "/system.slice/nginx.service");
    CHECK(names.path(nginx) == "/system.slice/nginx.service");
    CHECK(names.path(inode_of(root.path())) == "/");
    CHECK(names.walks() == 1);
    CHECK(names.path(nginx) == "/system.slice/nginx.service");
    CHECK(names.walks() == 1);  // known: no walk

    // A cgroup made later is found by the walk its first lookup makes; a missing id costs one
    // walk, then none.
    std::filesystem::create_directories(root.path() + "/system.slice/redis.service");
    CHECK(names.path(inode_of(root.path() + "/system.slice/redis.service")) ==
          "/system.slice/redis.service");
    CHECK(names.walks() == 2);
    CHECK_FALSE(names.path(1).has_value());
    CHECK_FALSE(names.path(1).has_value());
    CHECK(names.walks() == 3);

    // Removed cgroups are forgotten at the next walk: their names do not pile up. (cgroup ids
    // are never reused, but a test directory's inode number may be: create, then remove.)
    std::filesystem::create_directories(root.path() + "/system.slice/new.service");
    std::filesystem::remove(root.path() + "/system.slice/nginx.service");
    CHECK(names.exists("nginx.service"));
    CHECK(names.path(inode_of(root.path() + "/system.slice/new.service")).has_value());
    CHECK_FALSE(names.exists("nginx.service"));
    CHECK_FALSE(names.known_path(nginx).has_value());
}

TEST_CASE("labels: a label admits values up to its limit, then folds new ones into other") {
    LabelValues values({"other"}, 2);
    CHECK(values.admit("80", 1).index == 1);
    CHECK(values.admit("443", 2).index == 2);
    CHECK(values.admit("80", 3).index == 1);
    const auto refused = values.admit("8080", 4);
    CHECK(refused.refused);
    CHECK(refused.index == LabelValues::kOther);
    CHECK(values.admit("other", 5).index == LabelValues::kOther);
    CHECK(values.admitted() == 2);
    CHECK(values.find("443") == 2);
    CHECK(values.find("8080") == LabelValues::kOther);
}

TEST_CASE("labels: when full, the gone value used least recently makes room") {
    LabelValues values({"other", "unknown"}, 3);
    CHECK(values.admit("a", 1).index == 2);
    CHECK(values.admit("b", 2).index == 3);
    CHECK(values.admit("c", 3).index == 4);
    values.touch(2, 10);  // "a" used last
    values.mark_gone([](std::string_view name) { return name != "c"; });
    const auto d = values.admit("d", 11);
    CHECK(d.evicted);
    CHECK(d.index == 3);  // "b": gone, least recently used
    CHECK(values.name(3) == "d");
    CHECK(values.find("b") == LabelValues::kOther);
    const auto e = values.admit("e", 12);
    CHECK(e.index == 2);                   // "a", the other gone one
    CHECK(values.admit("f", 13).refused);  // "c" is not gone
    CHECK(values.evictions() == 2);
    // Replacing is not allowed everywhere (the gauge's thread).
    values.mark_gone([](std::string_view) { return true; });
    CHECK(values.admit("g", 14, false).refused);
    CHECK(values.admitted() == 3);
}

TEST_CASE("labels: the service port is the remote port of a client, the local one of a server") {
    __u64 listed[65536 / 64] = {};
    for (uint16_t port : {5432, 80}) listed[port / 64] |= __u64{1} << (port % 64);
    const auto service = [&](uint8_t origin, uint16_t lport, uint16_t rport, bool listening) {
        return tcpstates_service_port(listed, listening, origin, lport, rport);
    };
    CHECK(service(TCPSTATES_ORIGIN_ACTIVE, 40000, 5432, false) == 5432);
    CHECK(service(TCPSTATES_ORIGIN_ACTIVE, 40000, 9999, true) == 0);
    CHECK(service(TCPSTATES_ORIGIN_PASSIVE, 80, 40000, false) == 80);
    // A listener's and its children's own port is a service port whenever `listening` is on.
    CHECK(service(TCPSTATES_ORIGIN_PASSIVE, 8081, 40000, true) == 8081);
    CHECK(service(TCPSTATES_ORIGIN_PASSIVE, 8081, 40000, false) == 0);
    CHECK(service(TCPSTATES_ORIGIN_LISTENER, 8081, 0, true) == 8081);
    // A socket older than the daemon: whichever of its ports is a service port, local first.
    CHECK(service(TCPSTATES_ORIGIN_UNKNOWN, 80, 5432, false) == 80);
    CHECK(service(TCPSTATES_ORIGIN_UNKNOWN, 40000, 5432, false) == 5432);
    CHECK(service(TCPSTATES_ORIGIN_UNKNOWN, 40000, 40001, true) == 0);
    // An active open's first transition already has its remote port.
    CHECK(service(TCPSTATES_ORIGIN_ACTIVE, 0, 80, false) == 80);
}

TEST_CASE("labels: tuples get port and cgroup values within max_values") {
    TempDir root;
    std::filesystem::create_directories(root.path() + "/system.slice/web.service");
    std::filesystem::create_directories(root.path() + "/system.slice/db.service");
    std::filesystem::create_directories(root.path() + "/system.slice/batch.service");
    const uint64_t web = inode_of(root.path() + "/system.slice/web.service");
    const uint64_t db = inode_of(root.path() + "/system.slice/db.service");
    const uint64_t batch = inode_of(root.path() + "/system.slice/batch.service");
    CgroupNames names(root.path());
    TupleLabeler labels(config_with({5432}, true, 2, 2), names);
    std::vector<TupleLabeler::Eviction> evicted;

    const auto server = labels.values(8080, web, &evicted);
    CHECK(labels.name(Label::Port, server.port) == "8080");
    CHECK(labels.name(Label::Cgroup, server.cgroup) == "web.service");
    const auto client = labels.values(5432, db, &evicted);
    CHECK(labels.name(Label::Port, client.port) == "5432");
    CHECK(labels.name(Label::Cgroup, client.cgroup) == "db.service");
    // No service port: "other", and no refusal.
    CHECK(labels.name(Label::Port, labels.values(0, db, &evicted).port) == "other");
    CHECK(labels.refusals(Label::Port) == 0);
    // A third cgroup and a third port find the limit (2) reached, and nothing gone to replace;
    // an unknown owner is "unknown", always.
    const auto third = labels.values(9090, batch, &evicted);
    CHECK(labels.name(Label::Cgroup, third.cgroup) == "other");
    CHECK(labels.name(Label::Port, third.port) == "other");
    CHECK(labels.refusals(Label::Cgroup) == 1);
    CHECK(labels.refusals(Label::Port) == 1);
    CHECK(labels.name(Label::Cgroup, labels.values(8080, 0, &evicted).cgroup) == "unknown");
    CHECK(labels.values_of(Label::Cgroup).admitted() == 2);
    CHECK(evicted.empty());
}

TEST_CASE("labels: a removed cgroup's or an unlistened port's value makes room for a new one") {
    TempDir root;
    for (const char* unit : {"a.service", "b.service", "d.service"})
        std::filesystem::create_directories(root.path() + "/" + unit);
    const uint64_t a = inode_of(root.path() + "/a.service");
    const uint64_t b = inode_of(root.path() + "/b.service");
    const uint64_t d = inode_of(root.path() + "/d.service");
    CgroupNames names(root.path());
    TupleLabeler labels(config_with({}, true, 1, 2), names);
    std::vector<TupleLabeler::Eviction> evicted;
    const uint32_t a_index = labels.values(0, a, &evicted).cgroup;
    labels.values(0, b, &evicted);
    const uint32_t port_index = labels.values(8080, 0, &evicted).port;
    labels.name_cgroup(d);  // named while it exists
    CHECK(labels.name(Label::Port, labels.values(9090, 0, &evicted).port) == "other");

    // Port 8080 no longer listened on; a.service removed, found so by the walk that names the
    // new c.service. (Created first: a test directory's inode number, unlike a cgroup id, may
    // be reused.)
    const uint64_t listening_now[65536 / 64] = {};
    labels.mark_gone(listening_now);
    std::filesystem::create_directories(root.path() + "/c.service");
    const uint64_t c = inode_of(root.path() + "/c.service");
    std::filesystem::remove(root.path() + "/a.service");
    const auto fresh = labels.values(9090, c, &evicted);
    REQUIRE(evicted.size() == 2);
    CHECK(evicted[0].label == Label::Port);
    CHECK(evicted[0].index == port_index);
    CHECK(evicted[1].label == Label::Cgroup);
    CHECK(evicted[1].index == a_index);
    CHECK(fresh.port == port_index);
    CHECK(fresh.cgroup == a_index);
    CHECK(labels.name(Label::Cgroup, a_index) == "c.service");
    CHECK(labels.name(Label::Port, port_index) == "9090");
    CHECK(labels.replacements(Label::Cgroup) == 1);
    CHECK(labels.replacements(Label::Port) == 1);
    // b is still there, and d (named before its removal) finds no room.
    evicted.clear();
    std::filesystem::remove(root.path() + "/d.service");
    CHECK(labels.name(Label::Cgroup, labels.values(0, d, &evicted).cgroup) == "other");
    CHECK(evicted.empty());
}

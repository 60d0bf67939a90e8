#include "metrics/exemplar_labels.hpp"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

using tcpstatesd::endpoint;
using tcpstatesd::exemplar_labels;
using tcpstatesd::kExemplarLabelsLimit;

namespace {

tcpstates_exemplar exemplar_between(int family, const char* local, uint16_t lport,
                                    const char* remote, uint16_t rport) {
    tcpstates_exemplar e{};
    e.ipv6 = family == AF_INET6;
    REQUIRE(inet_pton(family, local, e.laddr) == 1);
    REQUIRE(inet_pton(family, remote, e.raddr) == 1);
    e.lport = lport;
    e.rport = rport;
    return e;
}

size_t length(const std::vector<prometheus::ClientMetric::Label>& labels) {
    size_t total = 0;
    for (const auto& label : labels) total += label.name.size() + label.value.size();
    return total;
}

}  // namespace

TEST_CASE("exemplar labels: addresses and ports as host:port, IPv6 in brackets") {
    const auto v4 = exemplar_between(AF_INET, "127.0.0.1", 443, "10.0.0.2", 51234);
    CHECK(endpoint(false, v4.laddr, v4.lport) == "127.0.0.1:443");
    const auto labels = exemplar_labels(v4, "nginx.service");
    REQUIRE(labels.size() == 3);
    CHECK(labels[0].name == "local");
    CHECK(labels[0].value == "127.0.0.1:443");
    CHECK(labels[1].name == "remote");
    CHECK(labels[1].value == "10.0.0.2:51234");
    CHECK(labels[2].name == "cgroup");
    CHECK(labels[2].value == "nginx.service");

    const auto v6 = exemplar_between(AF_INET6, "2001:db8::1", 443, "::1", 8);
    CHECK(exemplar_labels(v6, "")[0].value == "[2001:db8::1]:443");
    CHECK(exemplar_labels(v6, "")[1].value == "[::1]:8");
    CHECK(exemplar_labels(v6, "").size() == 2);  // owner unknown: no cgroup label
}

TEST_CASE("exemplar labels: the worst case stays within OpenMetrics' 128 characters") {
    // Two IPv6 addresses at their longest text (39 characters: 8 groups of 4 digits, nothing
    // to shorten) and 5-digit ports, and a cgroup path far longer than what is left (17).
    const char* longest = "fedc:ba98:7654:3210:fedc:ba98:7654:3210";
    const auto e = exemplar_between(AF_INET6, longest, 65535, longest, 65534);
    const std::string path =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        "0123456789abcdef.slice/cri-containerd-0123456789abcdef.scope";
    const auto labels = exemplar_labels(e, path);
    REQUIRE(labels.size() == 3);
    CHECK(labels[0].value == "[" + std::string(longest) + "]:65535");
    CHECK(labels[1].value == "[" + std::string(longest) + "]:65534");
    // The tail of the path, marked as shortened, exactly what fits.
    CHECK(labels[2].value == "..." + path.substr(path.size() - 14));
    CHECK(length(labels) == kExemplarLabelsLimit);

    // A path that fits exactly is kept whole; one character more is shortened.
    const std::string fits(17, 'a');
    CHECK(exemplar_labels(e, fits)[2].value == fits);
    CHECK(exemplar_labels(e, fits + "b")[2].value == "..." + std::string(13, 'a') + "b");
    CHECK(length(exemplar_labels(e, fits + "b")) == kExemplarLabelsLimit);
}

TEST_CASE("exemplar labels: a shortened cgroup does not start inside a UTF-8 character") {
    const char* longest = "fedc:ba98:7654:3210:fedc:ba98:7654:3210";
    const auto e = exemplar_between(AF_INET6, longest, 65535, longest, 65534);
    // 14 bytes fit after "...": the last 13 and the second byte of the two of "é", left out.
    const std::string path =
        "/system.slice/" + std::string(20, 'x') + "\xc3\xa9" + std::string(7, 'y') + ".scope";
    const auto labels = exemplar_labels(e, path);
    CHECK(labels[2].value == "..." + std::string(7, 'y') + ".scope");
    CHECK(length(labels) <= kExemplarLabelsLimit);
}

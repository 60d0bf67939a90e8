#include "kernel/reset_reasons.hpp"

#include <bpf/btf.h>

#include <catch2/catch.hpp>
#include <memory>

using tcpstatesd::ResetReasons;

namespace {

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

// A BTF with enum sk_rst_reason as Linux 6.10 declares its first values and its end, and one
// value past what a byte of the programs' events holds.
BtfPtr kernel_like_btf() {
    BtfPtr types(btf__new_empty(), btf__free);
    REQUIRE(types);
    REQUIRE(btf__add_enum(types.get(), "sk_rst_reason", 4) > 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_NOT_SPECIFIED", 0) == 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_NO_SOCKET", 1) == 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_TCP_ABORT_ON_CLOSE", 11) == 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_MAX", 25) == 0);
    REQUIRE(btf__add_enum_value(types.get(), "SK_RST_REASON_FAR", 300) == 0);
    return types;
}

}  // namespace

TEST_CASE("reset reasons: the kernel's names, lowercased without their prefix") {
    const BtfPtr types = kernel_like_btf();
    const ResetReasons reasons(types.get());
    CHECK(reasons.name(0) == "not_specified");
    CHECK(reasons.name(1) == "no_socket");
    CHECK(reasons.name(11) == "tcp_abort_on_close");
    // Values the enum does not name, its count, and past a byte: no name ("other" then).
    CHECK(reasons.name(5).empty());
    CHECK(reasons.name(25).empty());
    CHECK(reasons.name(300).empty());
    CHECK(reasons.name(uint64_t{1} << 40).empty());
}

TEST_CASE("reset reasons: a kernel without the enum names only 0, not_specified") {
    const BtfPtr empty(btf__new_empty(), btf__free);
    for (const ResetReasons& reasons :
         {ResetReasons(), ResetReasons(empty.get()), ResetReasons(nullptr)}) {
        CHECK(reasons.name(0) == "not_specified");
        CHECK(reasons.name(1).empty());
    }
}

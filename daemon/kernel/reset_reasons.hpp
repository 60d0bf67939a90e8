// The names of the reasons the kernel gives for the resets it sends (enum sk_rst_reason, passed
// by tcp:tcp_send_reset since Linux 6.10), read from the kernel's BTF at load, not listed here:
// a kernel adds reasons. The `reason` of tcpstates_resets_total{direction="sent"} and trace's:
// SK_RST_REASON_TCP_ABORT_ON_CLOSE is "tcp_abort_on_close". A kernel without the enum gives no
// reason: every reset is 0, "not_specified".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct btf;

namespace tcpstatesd {

// What a sent reset is exported as when the kernel's value has no name (or its (state, reason)
// pair found no slot in the programs' counts, bpf/tcpstates.h): the label value "other".
inline constexpr std::string_view kOtherResetReason = "other";
// The value of the reason a kernel without reasons passes (the programs count 0).
inline constexpr uint32_t kResetReasonNotSpecified = 0;

class ResetReasons {
public:
    // Only "not_specified", for 0: a kernel without reasons.
    ResetReasons();
    // From the enum sk_rst_reason of `types` (BTF); without it, as ResetReasons().
    explicit ResetReasons(const btf* types);

    // "tcp_abort_on_close", ...; a value the kernel does not name (or past 254): empty.
    std::string_view name(uint64_t reason) const;

private:
    std::vector<std::string> names_;  // by value
};

}  // namespace tcpstatesd

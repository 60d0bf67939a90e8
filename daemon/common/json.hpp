// JSON string literals, for the two places that write JSON by hand (JSON log lines and
// `trace --json`): one escaping rule, so that every line either writes is valid JSON.
#pragma once

#include <string>
#include <string_view>

namespace tcpstatesd {

// Appends `text` as a quoted JSON string: quotes, backslashes and control characters escaped;
// valid UTF-8 kept as it is; each byte that is not part of a valid UTF-8 sequence (a command
// name or a log argument is just bytes) replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view text);

}  // namespace tcpstatesd

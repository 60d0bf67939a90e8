// Where and how the daemon logs. Started by systemd with stderr connected to the journal, it
// logs to the journal natively (one entry per message, with its syslog priority and
// SYSLOG_IDENTIFIER=tcpstatesd); otherwise it writes timestamped lines to stderr, as plain
// text or as JSON objects (one per line) for log shippers.
#pragma once

#include <spdlog/common.h>
#include <spdlog/formatter.h>

#include <memory>

namespace tcpstatesd {

// The stderr format; the journal has its own structure and ignores it.
enum class LogFormat { Text, Json };

// Makes the default spdlog logger log at `level` to the journal or to stderr (see above).
// May be called again, e.g. on reload, to change the level or format.
void setup_logging(spdlog::level::level_enum level, LogFormat format);

// True when `fd` is the stream systemd connected to the journal: JOURNAL_STREAM holds its
// "<device>:<inode>" (systemd.exec(5)). A child that inherited the variable but has its own
// stderr does not match.
bool is_journal_stream(int fd, const char* journal_stream);

// The stderr line formats, e.g.
//   2026-11-26T05:30:00.123Z info listening on 0.0.0.0:9977
//   {"time":"2026-11-26T05:30:00.123Z","level":"info","message":"listening on 0.0.0.0:9977"}
// Times are UTC. JSON messages are escaped, invalid UTF-8 replaced by U+FFFD, so every line
// is valid JSON.
std::unique_ptr<spdlog::formatter> make_log_formatter(LogFormat format);

}  // namespace tcpstatesd

// Where and how the daemon logs: always to stderr. Started by systemd with stderr connected to
// the journal, each line carries its syslog priority as a "<N>" prefix, which journald turns
// into PRIORITY= (the journal adds time, unit and SYSLOG_IDENTIFIER=tcpstatesd itself);
// otherwise lines are timestamped, as plain text or as JSON objects for log shippers.
//
// Not sd_journal_send(): journald attributes a native message to its unit by looking up the
// sender's cgroup, which fails once the process has exited, so the last error of a daemon that
// fails at start-up was missing from `systemctl status` and `journalctl -u`. The stream
// carries its unit from the moment systemd connected it.
#pragma once

#include <spdlog/common.h>
#include <spdlog/formatter.h>

#include <memory>

namespace tcpstatesd {

// The stderr format outside systemd; the journal has its own structure and ignores it.
enum class LogFormat { Text, Json };

// Makes the default spdlog logger log at `level` to stderr, for the journal or not (see above).
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

// The journal stream format: every line of a message prefixed with its syslog priority,
//   <3>config.yaml:4:3: unknown key 'listen'
std::unique_ptr<spdlog::formatter> make_journal_formatter();

}  // namespace tcpstatesd

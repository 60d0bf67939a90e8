// The daemon's command line (everything but `trace`): where the configuration is, whether to
// only check it, and the few settings that flags override.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/web_config.hpp"

namespace tcpstatesd {

struct DaemonOptions {
    std::optional<std::string> config_path;      // --config
    bool check_config = false;                   // --check-config
    std::vector<std::string> listen_addresses;   // --web.listen-address, repeatable
    std::optional<std::string> telemetry_path;   // --web.telemetry-path
    std::optional<std::string> log_level;        // --log.level
    std::optional<std::string> web_config_path;  // --web.config.file (TLS, basic auth)
    std::optional<std::string> btf_path;         // --btf.path
    bool systemd_socket = false;                 // --web.systemd-socket (socket activation)
};

// Parses `tcpstatesd [--config PATH] [--check-config] [--web.listen-address ADDR]...
// [--web.telemetry-path PATH] [--log.level LEVEL] [--web.config.file PATH] [--btf.path FILE]
// [--web.systemd-socket]`. Throws std::invalid_argument on an unknown option, a missing value or a
// stray argument. Values are checked by apply_overrides.
DaemonOptions parse_daemon_options(int argc, char** argv);

// Flags win over the file: repeated --web.listen-address replace the whole list. Validates
// each value with the file's rules; a ConfigError names the flag.
void apply_overrides(Config& config, const DaemonOptions& options);

// The --web.config.file's TLS and basic auth; plain HTTP without authentication when the
// flag is absent. Throws ConfigError.
WebSecurity load_web_security(const DaemonOptions& options);

// Everything the daemon reads at start and on every reload.
struct Settings {
    Config config;    // the file, with the flags applied
    WebSecurity web;  // the --web.config.file
};

// The configuration file (see load_config) with the flags applied, and the web config.
// Throws ConfigError naming the file, line and column.
Settings load_settings(const DaemonOptions& options);

// --check-config: loads the configuration with the overrides applied, and the web config
// when given. Prints
// "tcpstatesd: configuration OK (<source>)" to stdout and returns 0, or prints the error
// line to stderr and returns 1.
int run_check_config(const DaemonOptions& options);

}  // namespace tcpstatesd

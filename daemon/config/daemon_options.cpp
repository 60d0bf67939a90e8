#include "config/daemon_options.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/command_line.hpp"

namespace tcpstatesd {

DaemonOptions parse_daemon_options(int argc, char** argv) {
    DaemonOptions o;
    parse_command_line(
        argc, argv,
        {
            {"config", kLongOnly, [&](const char* path) { o.config_path = path; }},
            {"check-config", kLongOnly, [&] { o.check_config = true; }},
            {"web.listen-address", kLongOnly,
             [&](const char* address) { o.listen_addresses.emplace_back(address); }},
            {"web.telemetry-path", kLongOnly, [&](const char* path) { o.telemetry_path = path; }},
            {"log.level", kLongOnly, [&](const char* level) { o.log_level = level; }},
            {"web.config.file", kLongOnly, [&](const char* path) { o.web_config_path = path; }},
            {"btf.path", kLongOnly, [&](const char* path) { o.btf_path = path; }},
            {"web.systemd-socket", kLongOnly, [&] { o.systemd_socket = true; }},
        },
        "tcpstatesd --help");
    return o;
}

void apply_overrides(Config& config, const DaemonOptions& options) {
    auto checked = [](const char* flag, auto rule, const std::string& value) {
        try {
            return rule(value);
        } catch (const std::invalid_argument& e) {
            throw ConfigError(std::string(flag) + ": " + e.what());
        }
    };
    if (!options.listen_addresses.empty()) {
        std::vector<ListenAddress> addresses;
        for (const auto& address : options.listen_addresses)
            addresses.push_back(checked(
                "--web.listen-address",
                [](const std::string& text) { return parse_listen_address(text); }, address));
        if (addresses.size() > kMaxListenAddresses)
            throw ConfigError("--web.listen-address: more than " +
                              std::to_string(kMaxListenAddresses) + " listen addresses");
        for (size_t i = 0; i < addresses.size(); ++i)
            for (size_t j = 0; j < i; ++j)
                if (listen_addresses_overlap(addresses[j], addresses[i]))
                    throw ConfigError("--web.listen-address: \"" + addresses[i].text +
                                      "\" overlaps \"" + addresses[j].text +
                                      "\": both cannot listen on the same port");
        config.web.listen_addresses = std::move(addresses);
    }
    if (options.telemetry_path) {
        checked("--web.telemetry-path", validate_telemetry_path, *options.telemetry_path);
        config.web.telemetry_path = *options.telemetry_path;
    }
    if (options.log_level)
        config.logging.level = checked("--log.level", parse_log_level, *options.log_level);
    if (options.btf_path) {
        if (options.btf_path->empty())
            throw ConfigError("--btf.path: expected a BTF file path, got nothing");
        checked("--btf.path", validate_btf_path, *options.btf_path);
        config.events.btf_path = *options.btf_path;
    }
}

WebSecurity load_web_security(const DaemonOptions& options) {
    if (!options.web_config_path) return {};
    if (options.web_config_path->empty())
        throw ConfigError("--web.config.file: expected a file path, got nothing");
    return load_web_config_file(*options.web_config_path);
}

Settings load_settings(const DaemonOptions& options) {
    Settings settings{load_config(options.config_path), {}};
    apply_overrides(settings.config, options);
    settings.web = load_web_security(options);
    return settings;
}

int run_check_config(const DaemonOptions& options) {
    try {
        const auto [config, web] = load_settings(options);
        std::printf("tcpstatesd: configuration OK (%s)\n", config.source.c_str());
        if (options.web_config_path)
            std::printf("tcpstatesd: web config OK (%s: %s, %zu basic auth users)\n",
                        web.source.c_str(), web.tls ? "TLS" : "no TLS",
                        web.basic_auth_users.size());
        return 0;
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}

}  // namespace tcpstatesd

#include <sys/stat.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "config/daemon_options.hpp"
#include "temp_dir.hpp"

using namespace tcpstatesd;
using tcpstatesd::test::TempDir;

namespace {

DaemonOptions parse(std::initializer_list<const char*> args) {
    std::vector<std::string> storage{"tcpstatesd"};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);
    return parse_daemon_options(static_cast<int>(storage.size()), argv.data());
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

struct Run {
    int exit_code;
    std::string out;
    std::string err;
};

// Runs the built tcpstatesd binary with `args` (already shell-quoted).
Run run_binary(const TempDir& dir, const std::string& args) {
    const std::string out = dir.path() + "/stdout", err = dir.path() + "/stderr";
    const std::string command =
        std::string("'") + TCPSTATESD_BINARY + "' " + args + " >'" + out + "' 2>'" + err + "'";
    const int status = std::system(command.c_str());
    REQUIRE(WIFEXITED(status));
    return {WEXITSTATUS(status), read_file(out), read_file(err)};
}

}  // namespace

TEST_CASE("daemon options: none given") {
    const auto o = parse({});
    CHECK_FALSE(o.config_path);
    CHECK_FALSE(o.check_config);
    CHECK(o.listen_addresses.empty());
    CHECK_FALSE(o.telemetry_path);
    CHECK_FALSE(o.log_level);
    CHECK_FALSE(o.btf_path);
    CHECK_FALSE(o.systemd_socket);
}

TEST_CASE("daemon options: every flag, both spellings of values") {
    const auto o = parse({"--config", "/a.yaml", "--check-config", "--web.listen-address=:1",
                          "--web.listen-address", "[::1]:2", "--web.telemetry-path", "/m",
                          "--log.level=debug", "--btf.path", "/k.btf", "--web.systemd-socket"});
    CHECK(o.config_path == "/a.yaml");
    CHECK(o.check_config);
    CHECK(o.listen_addresses == std::vector<std::string>{":1", "[::1]:2"});
    CHECK(o.telemetry_path == "/m");
    CHECK(o.log_level == "debug");
    CHECK(o.btf_path == "/k.btf");
    CHECK(o.systemd_socket);
    // The last --config wins; parsing twice in one process starts afresh.
    CHECK(parse({"--config=/a", "--config=/b"}).config_path == "/b");
}

TEST_CASE("daemon options: errors") {
    CHECK_THROWS_WITH(parse({"--bogus"}), "unknown option --bogus (see tcpstatesd --help)");
    CHECK_THROWS_WITH(parse({"--config=/a", "-x"}), "unknown option -x (see tcpstatesd --help)");
    CHECK_THROWS_WITH(parse({"--check-config", "--config"}), "option --config needs a value");
    CHECK_THROWS_WITH(parse({"--check-config=yes"}),
                      "unknown option --check-config=yes (see tcpstatesd --help)");
    CHECK_THROWS_WITH(parse({"--check-config", "extra"}),
                      "unexpected argument extra (see tcpstatesd --help)");
    CHECK_THROWS_AS(parse({"--log.level"}), std::invalid_argument);
}

TEST_CASE("daemon options: flags override the file") {
    Config config = parse_config(
        "web:\n  listen_addresses: [':1', ':2']\n  telemetry_path: /a\nlogging:\n  level: warn\n",
        "x.yaml");
    const Config from_file = config;

    apply_overrides(config, parse({}));
    CHECK(config == from_file);

    apply_overrides(config, parse({"--web.listen-address", "127.0.0.1:3", "--web.telemetry-path",
                                   "/b", "--log.level", "trace", "--btf.path", "/k.btf"}));
    // Repeated or not, --web.listen-address replaces the whole list.
    REQUIRE(config.web.listen_addresses.size() == 1);
    CHECK(config.web.listen_addresses[0].text == "127.0.0.1:3");
    CHECK(config.web.telemetry_path == "/b");
    CHECK(config.logging.level == spdlog::level::trace);
    CHECK(config.events.btf_path == "/k.btf");
    CHECK(config.web.max_threads == from_file.web.max_threads);
}

TEST_CASE("daemon options: override values are validated, errors name the flag") {
    Config config;
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--web.listen-address", ":1",
                                                     "--web.listen-address", "nowhere"})),
                      "--web.listen-address: expected \":port\" (every address), \"IPv4:port\" or "
                      "\"[IPv6]:port\" with a port from 1 to 65535, got \"nowhere\"");
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--web.telemetry-path", "/-/x"})),
                      "--web.telemetry-path: expected a path outside \"/-/\" (reserved for "
                      "/-/healthy and /-/ready), got \"/-/x\"");
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--log.level", "loud"})),
                      "--log.level: expected one of trace, debug, info, warn, error, critical, "
                      "off, got \"loud\"");
    CHECK_THROWS_AS(apply_overrides(config, parse({"--log.level", "loud"})), ConfigError);
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--btf.path="})),
                      "--btf.path: expected a BTF file path, got nothing");
    // Nothing is half-applied by a rejected override.
    CHECK(config == Config{});
}

TEST_CASE("tcpstatesd --check-config: good file, bad file, missing file, bad flag") {
    TempDir dir;
    const std::string good = dir.write("good.yaml", "filters:\n  local_ports: [80]\n");
    Run r = run_binary(dir, "--check-config --config '" + good + "'");
    CHECK(r.exit_code == 0);
    CHECK(r.out == "tcpstatesd: configuration OK (" + good + ")\n");
    CHECK(r.err.empty());

    const std::string bad = dir.write("bad.yaml", "events:\n  transport: ringbuffer\n");
    r = run_binary(dir, "--check-config --config '" + bad + "'");
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err == bad +
                       ":2:14: events.transport: expected one of auto, ringbuf, perfbuf, got "
                       "\"ringbuffer\"\n");

    r = run_binary(dir, "--config '" + dir.path() + "/absent.yaml' --check-config");
    CHECK(r.exit_code == 1);
    CHECK(r.err == "cannot open configuration file " + dir.path() +
                       "/absent.yaml: No such file or directory\n");

    // A flag that overrides the file is checked too.
    r = run_binary(dir, "--check-config --config '" + good + "' --log.level loud");
    CHECK(r.exit_code == 1);
    CHECK(r.err ==
          "--log.level: expected one of trace, debug, info, warn, error, critical, off, got "
          "\"loud\"\n");

    r = run_binary(dir, "--check-config --bogus");
    CHECK(r.exit_code == 2);
    CHECK(r.err == "tcpstatesd: unknown option --bogus (see tcpstatesd --help)\n");
}

TEST_CASE("tcpstatesd --check-config: the repository's default file") {
    TempDir dir;
    const std::string file = std::string(TCPSTATESD_SOURCE_DIR) + "/config/tcpstatesd.yaml";
    const Run r = run_binary(dir, "--check-config --config '" + file + "'");
    CHECK(r.exit_code == 0);
    CHECK(r.out == "tcpstatesd: configuration OK (" + file + ")\n");
}

TEST_CASE("daemon options: overlapping listen addresses and a FIFO as --btf.path are refused") {
    Config config;
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--web.listen-address", ":9982",
                                                     "--web.listen-address", "0.0.0.0:9982"})),
                      "--web.listen-address: \"0.0.0.0:9982\" overlaps \":9982\": both cannot "
                      "listen on the same port");
    TempDir dir;
    const std::string fifo = dir.path() + "/btf";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(apply_overrides(config, parse({"--btf.path", fifo.c_str()})),
                      "--btf.path: expected a BTF file, got \"" + fifo +
                          "\", which is not a regular file (a FIFO or device could block the "
                          "start for ever)");
    CHECK(config == Config{});

    // The check runs in --check-config, which returns at once rather than hang in open().
    const std::string file = dir.write("c.yaml", "events:\n  btf_path: " + fifo + "\n");
    const Run r = run_binary(dir, "--check-config --config '" + file + "'");
    CHECK(r.exit_code == 1);
    CHECK(r.err == file + ":2:13: events.btf_path: expected a BTF file, got \"" + fifo +
                       "\", which is not a regular file (a FIFO or device could block the start "
                       "for ever)\n");
}

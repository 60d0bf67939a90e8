#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "config/config.hpp"
#include "config/web_config.hpp"
#include "temp_dir.hpp"

using namespace tcpstatesd;
using tcpstatesd::test::TempDir;

namespace {

constexpr const char* kHash = "$2y$04$hRz6DmgaX1jsF1RfEBWzPerVc4c27f/pMjnuVp0G.9BwMc7zUkq7e";

std::string error_of(const std::string& yaml, const std::string& base = "/nonexistent") {
    try {
        parse_web_config(yaml, "web.yml", base);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("web config: empty means plain HTTP without users") {
    const WebSecurity web = parse_web_config("", "web.yml", "/x");
    CHECK_FALSE(web.tls);
    CHECK(web.basic_auth_users.empty());
}

TEST_CASE("web config: basic auth users with bcrypt hashes") {
    const WebSecurity web =
        parse_web_config(std::string("basic_auth_users:\n  alice: ") + kHash + "\n", "web.yml", "");
    REQUIRE(web.basic_auth_users.size() == 1);
    CHECK(web.basic_auth_users.at("alice") == kHash);
    CHECK(error_of("basic_auth_users:\n  alice: secret\n") ==
          "web.yml:2:10: basic_auth_users.alice: expected a bcrypt hash ($2a$, $2b$ or $2y$, 60 "
          "characters; see htpasswd -nbBC 10), got \"secret\"");
    CHECK(error_of(std::string("basic_auth_users:\n  a: ") + kHash + "\n  a: " + kHash + "\n") ==
          "web.yml:3:3: basic_auth_users: duplicate user \"a\" (first at line 2, column 3)");
}

TEST_CASE("web config: TLS files are read relative to the file's directory") {
    TempDir dir;
    REQUIRE(std::system(("cd " + dir.path() +
                         " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=t "
                         "-keyout k.pem -out c.pem 2>/dev/null && cp c.pem ca.pem")
                            .c_str()) == 0);
    const std::string path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n");
    const WebSecurity web = load_web_config_file(path);
    REQUIRE(web.tls);
    CHECK(web.tls->cert_file == dir.path() + "/c.pem");
    CHECK(web.tls->cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    CHECK(web.tls->key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    CHECK(web.tls->client_ca_pem == web.tls->cert_pem);
    CHECK(web.tls->client_auth == ClientAuth::RequireAndVerifyClientCert);
    CHECK(web.tls->min_version == TlsVersion::Tls13);
    CHECK(std::string(tls_priorities(TlsVersion::Tls13)) == "NORMAL:-VERS-ALL:+VERS-TLS1.3");

    // GnuTLS reads them at load time: a key where the certificate belongs is refused.
    const std::string swapped =
        dir.write("swapped.yml", "tls_server_config:\n  cert_file: k.pem\n  key_file: k.pem\n");
    try {
        load_web_config_file(swapped);
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).starts_with(swapped + ": tls_server_config: cert_file " +
                                                dir.path() + "/k.pem with key_file"));
    }
}

TEST_CASE("web config: what cannot be honoured is an error, not ignored") {
    CHECK(error_of("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n") ==
          "web.yml:4:16: tls_server_config.min_version: TLS 1.0 and 1.1 are not supported; use "
          "TLS12 or TLS13");
    CHECK(error_of("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n") ==
          "web.yml:4:3: tls_server_config.cipher_suites: not supported by tcpstatesd: GnuTLS "
          "picks the cipher suites (its NORMAL priority)");
    CHECK(error_of("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                   "  client_auth_type: VerifyClientCertIfGiven\n") ==
          "web.yml:4:21: tls_server_config.client_auth_type: verifying client certificates "
          "needs client_ca_file");
    CHECK(error_of("tls_server_config:\n  cert_file: a\n") ==
          "web.yml:2:3: tls_server_config.key_file: expected a file path, got nothing (missing)");
    CHECK(error_of("tls_server_config:\n  cert_file: a\n  key_file: b\n") ==
          "cannot open web.yml: tls_server_config.cert_file /nonexistent/a: No such file or "
          "directory");
    CHECK(error_of("tls:\n") ==
          "web.yml:1:1: unknown key \"tls\", expected one of tls_server_config, "
          "http_server_config, basic_auth_users");
    CHECK(error_of("http_server_config:\n  http2: false\n") ==
          "web.yml:2:3: http_server_config.http2: not supported by tcpstatesd: libmicrohttpd "
          "serves HTTP/1.1 only");
    CHECK(error_of("http_server_config:\n  headers: {X-Frame-Options: deny}\n") ==
          "web.yml:2:3: http_server_config.headers: not supported by tcpstatesd: extra response "
          "headers are not available");
}

TEST_CASE("web config: http_server_config sets the deadlines of slow clients") {
    const WebSecurity defaults = parse_web_config("", "web.yml", "/x");
    CHECK(defaults.http_server.read_header_timeout_seconds == 5);
    CHECK(defaults.http_server.write_timeout_seconds == 30);
    const WebSecurity web = parse_web_config(
        "http_server_config:\n  read_header_timeout_seconds: 2\n  write_timeout_seconds: 120\n",
        "web.yml", "/x");
    CHECK(web.http_server == HttpServerConfig{2, 120});
    CHECK(error_of("http_server_config:\n  read_header_timeout_seconds: 0\n") ==
          "web.yml:2:32: http_server_config.read_header_timeout_seconds: expected a whole number "
          "from 1 to 60, got \"0\"");
    CHECK(error_of("http_server_config:\n  write_timeout_seconds: 601\n") ==
          "web.yml:2:26: http_server_config.write_timeout_seconds: expected a whole number from 1 "
          "to 600, got \"601\"");
    CHECK(error_of("http_server_config:\n  read_timeout: 5\n") ==
          "web.yml:2:3: http_server_config: unknown key \"read_timeout\", expected one of "
          "read_header_timeout_seconds, write_timeout_seconds");
}

// The YAML reader's errors are config_test.cpp's to check, once: a web config goes through the
// same reader (daemon/config/yaml_document.cpp), which names its file, and says what it is.
TEST_CASE("web config errors: the YAML reader's errors name the web config file") {
    CHECK(error_of("- a\n,") ==
          "web.yml:2:1: invalid YAML: unexpected token (a \",\" outside [ ] or { }?)");
    CHECK(error_of("basic_auth_users: {}\n---\n,") ==
          "web.yml:2:1: a second YAML document; the web config is one document");
    CHECK(error_of("basic_auth_users:\n  \xff\xfe: x\n") ==
          "web.yml:2:3: invalid YAML: invalid UTF-8 byte \\xff (a configuration is UTF-8 text)");
    // Valid UTF-8 is read; yaml-cpp's columns count bytes.
    CHECK(error_of("basic_auth_users: {\xc3\xa9: x}") ==
          "web.yml:1:24: basic_auth_users.\xc3\xa9: expected a bcrypt hash ($2a$, $2b$ or $2y$, "
          "60 characters; see htpasswd -nbBC 10), got \"x\"");
}

TEST_CASE("web config errors: size and nesting bounds protect the YAML parser") {
    CHECK(error_of(std::string(100000, '[')) ==
          "web.yml:1:33: nested more than 32 levels deep; a configuration nests at most 4");
    CHECK(error_of("basic_auth_users:\n" + std::string(200, ' ') + "a: x\n") ==
          "web.yml:2:129: indented more than 128 columns; a configuration nests at most 4 levels");
    CHECK(error_of(std::string((1u << 20) + 1, '#')) ==
          "web.yml: the file is 1048577 bytes, more than the 1048576 a configuration may have");
}

TEST_CASE("web config files: larger than 1 MiB, or not a regular file, is refused unread") {
    TempDir dir;
    const std::string big = dir.write("big.yml", std::string((1u << 20) + 1, '#'));
    CHECK_THROWS_WITH(load_web_config_file(big),
                      "cannot read web config file " + big + ": larger than 1048576 bytes");
    CHECK_THROWS_WITH(load_web_config_file("/dev/zero"),
                      "cannot open web config file /dev/zero: not a regular file");
    CHECK_THROWS_WITH(
        load_web_config_file(dir.path() + "/absent.yml"),
        "cannot open web config file " + dir.path() + "/absent.yml: No such file or directory");
    // The certificate files it names are bounded the same way.
    const std::string sparse = dir.write("sparse.pem", "");
    std::filesystem::resize_file(sparse, 1u << 30);
    CHECK(error_of("tls_server_config:\n  cert_file: sparse.pem\n  key_file: k.pem\n",
                   dir.path()) == "cannot read web.yml: tls_server_config.cert_file " + sparse +
                                      ": larger than 1048576 bytes");
    CHECK(error_of("tls_server_config:\n  cert_file: /dev/zero\n  key_file: k.pem\n") ==
          "cannot open web.yml: tls_server_config.cert_file /dev/zero: not a regular file");
}

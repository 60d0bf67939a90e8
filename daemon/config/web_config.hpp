// The --web.config.file: TLS, basic authentication and the deadlines of the HTTP endpoint, in
// the format of the Prometheus exporter-toolkit (the file node_exporter takes), validated as
// strictly as the main configuration. Loading also reads the certificate, key and client-CA files,
// so that a reload either has everything it needs or changes nothing. docs/operations.md "Securing
// the endpoint" is the reference.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tcpstatesd {

// Connections per listen address. Connections are spread over the threads, each taking at
// most its share: so at most this many threads (web.max_threads).
inline constexpr unsigned kHttpConnectionLimit = 64;

// exporter-toolkit's client_auth_type values.
enum class ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
};

// Every client_auth_type with its name, in exporter-toolkit's order.
inline constexpr std::pair<ClientAuth, std::string_view> kClientAuthNames[] = {
    {ClientAuth::NoClientCert, "NoClientCert"},
    {ClientAuth::RequestClientCert, "RequestClientCert"},
    {ClientAuth::RequireAnyClientCert, "RequireAnyClientCert"},
    {ClientAuth::VerifyClientCertIfGiven, "VerifyClientCertIfGiven"},
    {ClientAuth::RequireAndVerifyClientCert, "RequireAndVerifyClientCert"},
};

enum class TlsVersion { Tls12, Tls13 };

struct TlsServerConfig {
    std::string cert_file;  // absolute, or relative to the web config file's directory
    std::string key_file;
    std::string client_ca_file;  // empty when none
    ClientAuth client_auth = ClientAuth::NoClientCert;
    TlsVersion min_version = TlsVersion::Tls12;
    // The files' contents (PEM), read when the web config is loaded.
    std::string cert_pem;
    std::string key_pem;
    std::string client_ca_pem;

    bool operator==(const TlsServerConfig&) const = default;
};

// http_server_config: how long a client may take, so that slow clients hold neither
// connections nor memory for long (docs/operations.md, "Securing the endpoint").
struct HttpServerConfig {
    // From connecting to the end of the request head (TLS handshake included), however
    // slowly the bytes trickle in; like Go's http.Server.ReadHeaderTimeout.
    unsigned read_header_timeout_seconds = 5;
    // From a complete request to the last byte of its response; like Go's WriteTimeout.
    unsigned write_timeout_seconds = 30;

    bool operator==(const HttpServerConfig&) const = default;
};

inline constexpr unsigned kMaxReadHeaderTimeoutSeconds = 60;
inline constexpr unsigned kMaxWriteTimeoutSeconds = 600;

struct WebSecurity {
    std::optional<TlsServerConfig> tls;                   // plain HTTP without
    std::map<std::string, std::string> basic_auth_users;  // user -> bcrypt hash; none: no auth
    HttpServerConfig http_server;
    std::string source;  // the file it came from, empty for "no web config"

    bool operator==(const WebSecurity&) const = default;
};

// Parses one web config document; relative paths are resolved against base_directory and the
// files they name are read. Throws ConfigError "source:line:column: what is wrong".
WebSecurity parse_web_config(std::string_view yaml_text, const std::string& source_name,
                             const std::string& base_directory);

// Reads and parses the file at path (its directory is the base for relative paths).
WebSecurity load_web_config_file(const std::string& path);

// The GnuTLS priority string for a minimum version (TLS 1.3 and 1.2, or 1.3 alone).
const char* tls_priorities(TlsVersion min_version);

}  // namespace tcpstatesd

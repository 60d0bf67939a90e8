#include "config/web_config.hpp"

#include <gnutls/gnutls.h>

#include <regex>
#include <string_view>
#include <vector>

#include "config/yaml_document.hpp"
#include "config/yaml_reader.hpp"

namespace tcpstatesd {

namespace {

using namespace yaml_reader;
using Keys = std::vector<Reader::Key>;

// exporter-toolkit keys that tcpstatesd knows but cannot honour with libmicrohttpd + GnuTLS:
// refused with a reason rather than ignored.
using Unsupported = std::map<std::string_view, std::string_view>;
const Unsupported kUnsupportedTls = {
    {"cipher_suites", "GnuTLS picks the cipher suites (its NORMAL priority)"},
    {"curve_preferences", "GnuTLS picks the curves (its NORMAL priority)"},
    {"prefer_server_cipher_suites", "GnuTLS's server preference is fixed"},
    {"max_version", "the highest version GnuTLS supports (TLS 1.3) is always allowed"},
    {"client_allowed_sans", "client certificates are checked against client_ca_file only"},
    {"cert", "give the certificate as cert_file"},
    {"key", "give the key as key_file"},
};
const Unsupported kUnsupportedHttp = {
    {"http2", "libmicrohttpd serves HTTP/1.1 only"},
    {"headers", "extra response headers are not available"},
};

void refuse_unsupported(const Reader& r, const Field& section, const Unsupported& unsupported) {
    if (!section.node.IsMap()) return;
    for (const auto& entry : section.node) {
        const YAML::Node key = entry.first;
        if (!key.IsScalar()) continue;
        const auto found = unsupported.find(key.Scalar());
        if (found != unsupported.end())
            r.fail(Field{section.path + "." + key.Scalar(), YAML::Node(), key.Mark()},
                   "not supported by tcpstatesd: " + std::string(found->second));
    }
}

// GnuTLS's own reading of the PEM texts, so that --check-config and a reload catch a key that
// does not match its certificate or a file that is not PEM, naming the file.
void check_with_gnutls(const TlsServerConfig& tls, const std::string& source) {
    gnutls_certificate_credentials_t credentials = nullptr;
    if (gnutls_certificate_allocate_credentials(&credentials) != GNUTLS_E_SUCCESS)
        throw ConfigError(source + ": GnuTLS cannot allocate credentials");
    auto datum = [](const std::string& text) {
        return gnutls_datum_t{reinterpret_cast<unsigned char*>(const_cast<char*>(text.data())),
                              static_cast<unsigned>(text.size())};
    };
    const gnutls_datum_t cert = datum(tls.cert_pem), key = datum(tls.key_pem),
                         ca = datum(tls.client_ca_pem);
    std::string error;
    int code = gnutls_certificate_set_x509_key_mem(credentials, &cert, &key, GNUTLS_X509_FMT_PEM);
    if (code < 0)
        error = "tls_server_config: cert_file " + tls.cert_file + " with key_file " + tls.key_file +
                ": " + gnutls_strerror(code);
    if (error.empty() && !tls.client_ca_pem.empty()) {
        code = gnutls_certificate_set_x509_trust_mem(credentials, &ca, GNUTLS_X509_FMT_PEM);
        if (code <= 0)
            error = "tls_server_config: client_ca_file " + tls.client_ca_file + ": " +
                    (code < 0 ? gnutls_strerror(code) : "no certificate in it");
    }
    gnutls_certificate_free_credentials(credentials);
    if (!error.empty()) throw ConfigError(source + ": " + error);
}

bool is_bcrypt_hash(const std::string& text) {
    static const std::regex kBcrypt(R"(\$2[aby]\$[0-3][0-9]\$[./A-Za-z0-9]{53})");
    return std::regex_match(text, kBcrypt);
}

std::string resolve(const std::string& path, const std::string& base_directory) {
    if (path.empty() || path.front() == '/' || base_directory.empty()) return path;
    return base_directory + "/" + path;
}

struct TlsFields {
    std::optional<Field> cert_file, key_file, client_ca_file, client_auth;
};

}  // namespace

const char* tls_priorities(TlsVersion min_version) {
    return min_version == TlsVersion::Tls13 ? "NORMAL:-VERS-ALL:+VERS-TLS1.3"
                                            : "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
}

WebSecurity parse_web_config(std::string_view yaml_text, const std::string& source_name,
                             const std::string& base_directory) {
    const YAML::Node root = load_yaml_document(yaml_text, source_name, "the web config");
    Reader r(source_name);

    WebSecurity web;
    web.source = source_name;
    TlsServerConfig tls;
    TlsFields seen;
    std::optional<Field> tls_section;
    auto remember = [](std::optional<Field>& slot, std::string& value) {
        return [&slot, &value](const Field& f) {
            slot = f;
            value = f.node.IsScalar() ? f.node.Scalar() : "";
        };
    };
    try {
        r.mapping(
            Field{"", root, root.Mark()},
            {
                {"tls_server_config",
                 [&](const Field& section) {
                     tls_section = section;
                     Keys keys = {
                         {"cert_file", remember(seen.cert_file, tls.cert_file)},
                         {"key_file", remember(seen.key_file, tls.key_file)},
                         {"client_ca_file", remember(seen.client_ca_file, tls.client_ca_file)},
                         {"client_auth_type",
                          [&](const Field& f) {
                              seen.client_auth = f;
                              std::vector<std::string_view> names;
                              for (const auto& [auth, name] : kClientAuthNames)
                                  names.push_back(name);
                              tls.client_auth = kClientAuthNames[r.choice(f, names)].first;
                          }},
                         {"min_version",
                          [&](const Field& f) {
                              const std::string& v = r.scalar(f, "TLS12 or TLS13");
                              if (v == "TLS10" || v == "TLS11")
                                  r.fail(f,
                                         "TLS 1.0 and 1.1 are not supported; use TLS12 or "
                                         "TLS13");
                              tls.min_version = r.choice(f, {"TLS12", "TLS13"}) == 0
                                                    ? TlsVersion::Tls12
                                                    : TlsVersion::Tls13;
                          }},
                     };
                     refuse_unsupported(r, section, kUnsupportedTls);
                     r.mapping(section, keys);
                 }},
                {"http_server_config",
                 [&](const Field& section) {
                     HttpServerConfig& http = web.http_server;
                     refuse_unsupported(r, section, kUnsupportedHttp);
                     r.mapping(section, {
                                            {"read_header_timeout_seconds",
                                             [&](const Field& f) {
                                                 http.read_header_timeout_seconds =
                                                     static_cast<unsigned>(r.whole(
                                                         f, 1, kMaxReadHeaderTimeoutSeconds));
                                             }},
                                            {"write_timeout_seconds",
                                             [&](const Field& f) {
                                                 http.write_timeout_seconds = static_cast<unsigned>(
                                                     r.whole(f, 1, kMaxWriteTimeoutSeconds));
                                             }},
                                        });
                 }},
                {"basic_auth_users",
                 [&](const Field& section) {
                     if (section.node.IsNull()) return;
                     if (!section.node.IsMap())
                         r.expected(section, "a mapping of user names to bcrypt hashes");
                     std::map<std::string, YAML::Mark> names;
                     for (const auto& entry : section.node) {
                         const YAML::Node key = entry.first;
                         const Field key_field{section.path, key, key.Mark()};
                         const std::string& user = r.scalar(key_field, "a user name");
                         if (user.empty() || user.find(':') != std::string::npos)
                             r.fail(key_field, "user name " + quoted(user) +
                                                   " must be non-empty and without \":\"");
                         auto [first, inserted] = names.emplace(user, key.Mark());
                         if (!inserted)
                             r.fail(key_field, "duplicate user " + quoted(user) + " (first at " +
                                                   position(first->second) + ")");
                         const Field value{section.path + "." + user, entry.second, key.Mark()};
                         const std::string what =
                             "a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters; see "
                             "htpasswd -nbBC 10)";
                         const std::string& hash = r.scalar(value, what);
                         if (!is_bcrypt_hash(hash)) r.expected(value, what);
                         web.basic_auth_users.emplace(user, hash);
                     }
                 }},
            });
    } catch (const YAML::Exception& e) {
        r.fail(e.mark, e.msg);
    }

    if (!tls_section) return web;
    // Like exporter-toolkit: a tls_server_config needs both files; a client CA is needed to
    // verify and pointless without a client certificate check.
    const YAML::Mark at = tls_section->mark();
    auto file = [&](const std::optional<Field>& field, const std::string& name,
                    const std::string& value) {
        if (value.empty())
            r.fail(field ? field->mark() : at, "tls_server_config." + name +
                                                   ": expected a file path, got nothing" +
                                                   (field ? "" : " (missing)"));
    };
    file(seen.cert_file, "cert_file", tls.cert_file);
    file(seen.key_file, "key_file", tls.key_file);
    const bool verifies = tls.client_auth == ClientAuth::VerifyClientCertIfGiven ||
                          tls.client_auth == ClientAuth::RequireAndVerifyClientCert;
    if (verifies && tls.client_ca_file.empty())
        r.fail(seen.client_auth->mark(),
               "tls_server_config.client_auth_type: verifying client certificates needs "
               "client_ca_file");
    if (!tls.client_ca_file.empty() && !verifies)
        r.fail(seen.client_ca_file->mark(),
               "tls_server_config.client_ca_file: only used with client_auth_type "
               "VerifyClientCertIfGiven or RequireAndVerifyClientCert");
    tls.cert_file = resolve(tls.cert_file, base_directory);
    tls.key_file = resolve(tls.key_file, base_directory);
    tls.cert_pem = read_config_file(tls.cert_file, source_name + ": tls_server_config.cert_file");
    tls.key_pem = read_config_file(tls.key_file, source_name + ": tls_server_config.key_file");
    if (!tls.client_ca_file.empty()) {
        tls.client_ca_file = resolve(tls.client_ca_file, base_directory);
        tls.client_ca_pem = read_config_file(tls.client_ca_file,
                                             source_name + ": tls_server_config.client_ca_file");
    }
    check_with_gnutls(tls, source_name);
    web.tls = std::move(tls);
    return web;
}

WebSecurity load_web_config_file(const std::string& path) {
    const auto slash = path.rfind('/');
    const std::string directory = slash == std::string::npos ? "."
                                  : slash == 0               ? "/"
                                                             : path.substr(0, slash);
    return parse_web_config(read_config_file(path, "web config file"), path, directory);
}

}  // namespace tcpstatesd

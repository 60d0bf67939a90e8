#include "http/access_policy.hpp"

#include <crypt.h>
#include <gnutls/gnutls.h>

#include <cstring>
#include <memory>

namespace tcpstatesd {

namespace {

// Checked for unknown users so that the time to answer does not tell which user names exist
// (cost 10, the usual one; any password fails on it since the user is unknown anyway).
constexpr const char* kDummyHash = "$2y$10$QmVjYXVzZSBpdCBpcyB0a.aBfqphNeHOrVUKWeliUKagM/lBAO19m";

bool bcrypt_matches(const std::string& password, const std::string& hash) {
    auto data = std::make_unique<crypt_data>();  // about 32 KiB: not for a thread's stack
    const char* computed = crypt_r(password.c_str(), hash.c_str(), data.get());
    if (computed == nullptr || std::strlen(computed) != hash.size()) return false;
    unsigned char difference = 0;  // compared in full: no early exit to time
    for (size_t i = 0; i < hash.size(); ++i)
        difference |= static_cast<unsigned char>(computed[i] ^ hash[i]);
    return difference == 0;
}

// The client_auth_type values, addressable as the notify callback's closure.
constexpr ClientAuth kClientAuths[] = {
    ClientAuth::NoClientCert, ClientAuth::RequestClientCert, ClientAuth::RequireAnyClientCert,
    ClientAuth::VerifyClientCertIfGiven, ClientAuth::RequireAndVerifyClientCert};

// VerifyClientCertIfGiven: GnuTLS's own verification (gnutls_session_set_verify_cert) also
// fails a client that sends no certificate, so a certificate that was sent is checked here,
// during the handshake; non-zero fails it.
int verify_if_given(gnutls_session_t session) {
    unsigned count = 0;
    if (gnutls_certificate_get_peers(session, &count) == nullptr || count == 0) return 0;
    unsigned status = 0;
    return gnutls_certificate_verify_peers2(session, &status) == GNUTLS_E_SUCCESS && status == 0
               ? 0
               : -1;
}

// MHD asks for a client certificate (GNUTLS_CERT_REQUEST) when given a trust list and never
// verifies it. Each TLS session is set up here, before its handshake, so that GnuTLS itself
// requires and verifies the certificate: a client refused fails the handshake.
void configure_client_auth(void* mode, MHD_Connection* connection, void** /*context*/,
                           MHD_ConnectionNotificationCode code) {
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const MHD_ConnectionInfo* info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == nullptr || info->tls_session == nullptr) return;
    auto session = static_cast<gnutls_session_t>(info->tls_session);
    switch (*static_cast<const ClientAuth*>(mode)) {
        case ClientAuth::NoClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_IGNORE);
            break;
        case ClientAuth::RequestClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
            break;
        case ClientAuth::RequireAnyClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
            break;
        case ClientAuth::VerifyClientCertIfGiven:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
            gnutls_session_set_verify_function(session, verify_if_given);
            break;
        case ClientAuth::RequireAndVerifyClientCert:
            gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
            gnutls_session_set_verify_cert(session, nullptr, 0);
            break;
    }
}

}  // namespace

bool basic_auth_passes(MHD_Connection* connection,
                       const std::map<std::string, std::string>& users) {
    if (users.empty()) return true;
    char* password = nullptr;
    char* user = MHD_basic_auth_get_username_password(connection, &password);
    const bool given = user != nullptr;
    const std::string name = given ? user : "";
    const std::string secret = password == nullptr ? "" : password;
    MHD_free(user);
    MHD_free(password);
    if (!given) return false;
    const auto found = users.find(name);
    const bool matches = bcrypt_matches(secret, found == users.end() ? kDummyHash : found->second);
    return matches && found != users.end();
}

MHD_OptionItem client_certificate_option(ClientAuth mode) {
    MHD_NotifyConnectionCallback notify = configure_client_auth;
    return {MHD_OPTION_NOTIFY_CONNECTION, reinterpret_cast<intptr_t>(notify),
            const_cast<ClientAuth*>(&kClientAuths[static_cast<size_t>(mode)])};
}

}  // namespace tcpstatesd

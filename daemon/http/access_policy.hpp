// Who may use the HTTP endpoint: basic authentication against the web config's bcrypt hashes,
// and the TLS client-certificate mode, applied to each GnuTLS session.
#pragma once

#include <microhttpd.h>

#include <map>
#include <string>

#include "config/web_config.hpp"

namespace tcpstatesd {

// True when the request carries a user and password of `users` (user -> bcrypt hash), or when
// there are no users. Unknown users cost a bcrypt check too, so the time to answer does not
// tell which names exist.
bool basic_auth_passes(MHD_Connection* connection, const std::map<std::string, std::string>& users);

// The MHD_OPTION_NOTIFY_CONNECTION item that makes GnuTLS itself request, require and verify
// client certificates as `mode` says, in every TLS session of the daemon it is given to.
MHD_OptionItem client_certificate_option(ClientAuth mode);

}  // namespace tcpstatesd

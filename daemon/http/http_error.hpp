// What the HTTP server throws when it cannot serve: the message names the address and the
// cause.
#pragma once

#include <stdexcept>

namespace tcpstatesd {

class HttpError : public std::runtime_error {
    using runtime_error::runtime_error;
};

}  // namespace tcpstatesd

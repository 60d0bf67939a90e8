#include "common/read_file.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace tcpstatesd {

std::string read_file(const std::string& path, size_t max_bytes) {
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw FileError("open", path, std::strerror(errno));
    std::string text;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw FileError("read", path, std::strerror(errno));
        if (n == 0) return text;
        if (text.size() + static_cast<size_t>(n) > max_bytes)
            throw FileError("read", path, "larger than " + std::to_string(max_bytes) + " bytes");
        text.append(buffer, static_cast<size_t>(n));
    }
}

}  // namespace tcpstatesd

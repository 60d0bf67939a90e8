#include "common/read_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "common/fd.hpp"

namespace tcpstatesd {

std::string read_file(const std::string& path, size_t max_bytes) {
    // O_NONBLOCK: opening a FIFO without a writer must not hang the daemon (or a reload)
    // before fstat can refuse it; it changes nothing for a regular file.
    const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd) throw FileError("open", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw FileError("open", path, std::strerror(errno));
    // A FIFO, socket or device could block or never end.
    if (S_ISDIR(st.st_mode)) throw FileError("open", path, std::strerror(EISDIR));
    if (!S_ISREG(st.st_mode)) throw FileError("open", path, "not a regular file");
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

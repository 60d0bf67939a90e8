// Reading a whole file into memory, bounded: the one way the daemon reads its configuration
// files and procfs.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace tcpstatesd {

// A file that cannot be opened or read, or is larger than allowed. what() is
// "<action> <path>: <reason>", e.g. "cannot open /etc/x.yaml: No such file or directory".
class FileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The file's bytes. More than max_bytes is an error (a configuration pointed at /dev/zero
// must not take the daemon's memory); EINTR is retried.
std::string read_file(const std::string& path, size_t max_bytes);

}  // namespace tcpstatesd

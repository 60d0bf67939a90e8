// Reading a whole file into memory, bounded: the one way the daemon reads its configuration
// files, the files they name, and procfs.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace tcpstatesd {

// A file that cannot be opened or read, or is larger than allowed. what() is
// "cannot <action> <path>: <reason>", e.g. "cannot open /etc/x.yaml: No such file or
// directory"; the parts are kept so that a caller can name the kind of file in its own message.
class FileError : public std::runtime_error {
public:
    FileError(std::string action, std::string path, std::string reason)
        : std::runtime_error("cannot " + action + " " + path + ": " + reason),
          action_(std::move(action)),
          path_(std::move(path)),
          reason_(std::move(reason)) {}

    const std::string& action() const { return action_; }  // "open" or "read"
    const std::string& path() const { return path_; }
    const std::string& reason() const { return reason_; }

private:
    std::string action_, path_, reason_;
};

// The bytes of a regular file. Anything else (a FIFO, a device such as /dev/zero) is an
// error, and so is more than max_bytes (a sparse file of a gigabyte must not take the
// daemon's memory); EINTR is retried.
std::string read_file(const std::string& path, size_t max_bytes);

}  // namespace tcpstatesd

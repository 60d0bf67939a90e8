// A fresh directory for one test, removed with everything in it when the object goes. It lies
// in the system's directory for temporary files: $TMPDIR when set, else /tmp
// (std::filesystem::temp_directory_path()). For the unit, integration and fuzz tests.
#pragma once

#include <stdlib.h>  // mkdtemp (POSIX)

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace tcpstatesd::test {

class TempDir {
public:
    TempDir() {
        std::error_code error;
        const std::filesystem::path base = std::filesystem::temp_directory_path(error);
        if (error)
            throw std::runtime_error("no directory for temporary files: " + error.message() +
                                     " (TMPDIR names one, else /tmp)");
        std::string pattern = (base / "tcpstatesd-test-XXXXXX").string();
        if (!mkdtemp(pattern.data()))
            throw std::runtime_error("cannot create the temporary directory " + pattern + ": " +
                                     std::strerror(errno) + " (TMPDIR sets where)");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;  // a destructor does not throw; what cannot go stays
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

    // Writes a file in the directory, creating the directories `name` names, and returns its
    // path.
    std::string write(const std::string& name, const std::string& content) const {
        const std::string path = path_ + "/" + name;
        std::filesystem::create_directories(std::filesystem::path(path).parent_path());
        std::ofstream out(path, std::ios::binary);
        out << content;
        if (!out.flush()) throw std::runtime_error("cannot write " + path);
        return path;
    }

private:
    std::string path_;
};

}  // namespace tcpstatesd::test

#include "init_context_hits.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace tcpstatesd::test {

namespace {

// Entries of a /proc directory listing, or those whose link names `target`.
size_t count_entries(const std::string& directory, const char* target = nullptr) {
    size_t count = 0;
    DIR* dir = opendir(directory.c_str());
    if (!dir) return 0;
    while (const dirent* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        if (!target) {
            ++count;
            continue;
        }
        char link[64] = {};
        const std::string path = directory + "/" + entry->d_name;
        if (readlink(path.c_str(), link, sizeof link - 1) > 0 && std::string(link) == target)
            ++count;
    }
    closedir(dir);
    return count;
}

}  // namespace

InitContextHits::InitContextHits(uint16_t port)
    : report_path_("/tmp/tcpstatesd-init-hits-" + std::to_string(getpid()) + "-" +
                   std::to_string(port)) {
    const std::string filter =
        "sport == " + std::to_string(port) + " || dport == " + std::to_string(port);
    const std::string script =
        "{ mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; } "
        "&& exec perf stat -x, -o " +
        report_path_ + " -e sock:inet_sock_set_state --filter '" + filter + "' -p 1";
    perf_ = fork();
    if (perf_ < 0) throw std::runtime_error("fork for perf stat failed");
    if (perf_ == 0) {
        execlp("unshare", "unshare", "--mount", "sh", "-c", script.c_str(), nullptr);
        _exit(127);
    }
    // Counting once perf holds a counter on every thread of PID 1.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (count_entries("/proc/" + std::to_string(perf_) + "/fd", "anon_inode:[perf_event]") <
           count_entries("/proc/1/task")) {
        int status = 0;
        if (waitpid(perf_, &status, WNOHANG) == perf_) {
            perf_ = -1;
            throw std::runtime_error(
                "perf stat exited before counting (is perf installed? "
                "Debian: linux-perf)");
        }
        if (std::chrono::steady_clock::now() > deadline) {
            // The destructor does not run for a constructor that throws.
            kill(perf_, SIGKILL);
            waitpid(perf_, nullptr, 0);
            unlink(report_path_.c_str());
            throw std::runtime_error("perf stat did not attach to PID 1 within 10 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

InitContextHits::~InitContextHits() {
    if (perf_ > 0) {
        kill(perf_, SIGKILL);
        waitpid(perf_, nullptr, 0);
    }
    unlink(report_path_.c_str());
}

uint64_t InitContextHits::stop() {
    if (perf_ > 0) {
        kill(perf_, SIGINT);
        waitpid(perf_, nullptr, 0);
        perf_ = -1;
    }
    std::ifstream report(report_path_);
    std::stringstream text;
    text << report.rdbuf();
    std::string line;
    while (std::getline(text, line)) {
        const size_t comma = line.find(',');
        if (line.find("sock:inet_sock_set_state") == std::string::npos || comma == 0) continue;
        const std::string count = line.substr(0, comma);
        // "<not counted>" when no thread of PID 1 ran meanwhile.
        return count.find_first_not_of("0123456789") == std::string::npos ? std::stoull(count) : 0;
    }
    throw std::runtime_error("perf stat reported no count: " + text.str());
}

}  // namespace tcpstatesd::test

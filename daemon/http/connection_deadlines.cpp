#include "http/connection_deadlines.hpp"

#include <sys/socket.h>

#include <algorithm>

namespace tcpstatesd {

ConnectionDeadlines::ConnectionDeadlines(size_t groups, size_t limit)
    : limit_(limit), group_sizes_(groups, 0), thread_([this] { run(); }) {}

ConnectionDeadlines::~ConnectionDeadlines() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_one();
    thread_.join();
}

void ConnectionDeadlines::opened(const void* key, int fd, size_t group,
                                 Clock::duration head_timeout) {
    const auto now = Clock::now();
    {
        std::lock_guard lock(mutex_);
        entries_[key] = Entry{fd, group, true, now, now + head_timeout};
        ++group_sizes_.at(group);
    }
    // A full group may make other connections late at once.
    changed_.notify_one();
}

void ConnectionDeadlines::head_received(const void* key, Clock::duration response_timeout) {
    set_phase(key, false, response_timeout);
}

void ConnectionDeadlines::response_sent(const void* key, Clock::duration head_timeout) {
    set_phase(key, true, head_timeout);
}

void ConnectionDeadlines::set_phase(const void* key, bool awaiting_head, Clock::duration timeout) {
    const auto now = Clock::now();
    {
        std::lock_guard lock(mutex_);
        const auto found = entries_.find(key);
        if (found == entries_.end()) return;
        found->second.awaiting_head = awaiting_head;
        found->second.since = now;
        found->second.due = now + timeout;
    }
    changed_.notify_one();
}

void ConnectionDeadlines::closed(const void* key) {
    std::lock_guard lock(mutex_);
    const auto found = entries_.find(key);
    if (found == entries_.end()) return;
    --group_sizes_.at(found->second.group);
    entries_.erase(found);
}

size_t ConnectionDeadlines::shut_down() const {
    std::lock_guard lock(mutex_);
    return shut_down_;
}

ConnectionDeadlines::Clock::time_point ConnectionDeadlines::effective_due(
    const Entry& entry) const {
    if (entry.awaiting_head && group_sizes_[entry.group] >= limit_)
        return std::min(entry.due, entry.since + kCrowdedHeadGrace);
    return entry.due;
}

void ConnectionDeadlines::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        const auto now = Clock::now();
        auto next = Clock::time_point::max();
        for (auto& [key, entry] : entries_) {
            if (entry.fd < 0) continue;
            const auto due = effective_due(entry);
            if (due > now) {
                next = std::min(next, due);
                continue;
            }
            // The socket stays open until libmicrohttpd closes it, after closed(): the
            // number cannot have been reused. Its next read sees the end of the stream, its
            // next write fails: either way it closes the connection and frees its response.
            ::shutdown(entry.fd, SHUT_RDWR);
            entry.fd = -1;
            ++shut_down_;
        }
        if (next == Clock::time_point::max())
            changed_.wait(lock);
        else
            changed_.wait_until(lock, next);
    }
}

}  // namespace tcpstatesd

// Deadlines for the HTTP server's connections that libmicrohttpd does not have. Its timeout
// counts idle time only, so a client that trickles one byte every few seconds keeps a
// connection, and the memory its response holds, for as long as it likes. This keeps, for
// each open connection, the time by which its request head or its response must be complete,
// and a thread of its own shuts down the socket of one that is late; libmicrohttpd then sees
// the client gone and closes the connection as usual.
//
// Also, when every connection a listen address may have is taken (kHttpConnectionLimit), a
// connection still without a complete head after kCrowdedHeadGrace is shut down: so clients
// that connect and say nothing, from however many addresses, cannot keep a scraper waiting
// in the listen queue for longer than that.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace tcpstatesd {

inline constexpr std::chrono::seconds kCrowdedHeadGrace{1};

class ConnectionDeadlines {
public:
    using Clock = std::chrono::steady_clock;

    // One group per listen address; each holds at most `limit` connections. Starts the thread,
    // which takes the caller's signal mask.
    ConnectionDeadlines(size_t groups, size_t limit);
    ~ConnectionDeadlines();  // stops and joins the thread
    ConnectionDeadlines(const ConnectionDeadlines&) = delete;
    ConnectionDeadlines& operator=(const ConnectionDeadlines&) = delete;

    // The calls below come from libmicrohttpd's threads, for the connection `key`. closed() must
    // come before the socket is closed: until then shutting it down cannot hit another socket.

    // Accepted on socket `fd` in `group`: the request head is due within `head_timeout`.
    void opened(const void* key, int fd, size_t group, Clock::duration head_timeout);
    // The head is in: the response is due within `response_timeout`.
    void head_received(const void* key, Clock::duration response_timeout);
    // The response is sent and the connection kept alive: the next head is due within
    // `head_timeout`.
    void response_sent(const void* key, Clock::duration head_timeout);
    void closed(const void* key);

    // Connections shut down for being late, since the start.
    size_t shut_down() const;

private:
    struct Entry {
        int fd;  // -1 once shut down
        size_t group;
        bool awaiting_head;
        Clock::time_point since;  // when the current phase started
        Clock::time_point due;
    };

    void run();
    // When `entry` is late: its own deadline, earlier while its group is full and it is
    // waiting for a head.
    Clock::time_point effective_due(const Entry& entry) const;
    void set_phase(const void* key, bool awaiting_head, Clock::duration timeout);

    const size_t limit_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    bool stopping_ = false;
    std::unordered_map<const void*, Entry> entries_;
    std::vector<size_t> group_sizes_;
    size_t shut_down_ = 0;
    std::thread thread_;  // last: starts once everything above is initialized
};

}  // namespace tcpstatesd

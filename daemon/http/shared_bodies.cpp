#include "http/shared_bodies.hpp"

#include <exception>
#include <utility>

namespace tcpstatesd {

SharedBodies::SharedBodies(Render render) : render_(std::move(render)) {}

size_t SharedBodies::alive(ExpositionFormat format, Encoding encoding) const {
    return alive_[kind(format, encoding)].load();
}

SharedBodies::Body SharedBodies::get(ExpositionFormat format, Encoding encoding,
                                     Clock::duration deadline) {
    const size_t index = kind(format, encoding);
    Slot& slot = slots_[index];
    std::unique_lock lock(mutex_);
    if (slot.rendering) {
        // Asked while its body is being made: that one is as fresh as any.
        const unsigned long awaited = slot.renders + 1;
        rendered_.wait(lock, [&] { return slot.renders >= awaited; });
        if (Body body = slot.newest.lock(); body && slot.newest_rendered != Clock::time_point{})
            return body;
    }
    for (;;) {
        Body newest = slot.newest.lock();
        const bool shareable = newest && Clock::now() - slot.newest_rendered < deadline;
        if (shareable && alive_[index].load() >= kFreshBodies) return newest;
        if (!any_rendering_) {
            newest.reset();  // not kept alive by this scrape (its deleter takes no lock)
            return render_new(lock, format, encoding);
        }
        rendered_.wait(lock, [&] { return !any_rendering_; });
    }
}

SharedBodies::Body SharedBodies::render_new(std::unique_lock<std::mutex>& lock,
                                            ExpositionFormat format, Encoding encoding) {
    const size_t index = kind(format, encoding);
    Slot& slot = slots_[index];
    any_rendering_ = true;
    slot.rendering = true;
    lock.unlock();
    std::exception_ptr failure;
    std::string text;
    try {
        text = render_(format, encoding);
    } catch (...) {
        failure = std::current_exception();
    }
    Body body;
    if (!failure) {
        // Counted while alive, whichever thread drops the last reference.
        std::atomic<size_t>& alive = alive_[index];
        ++alive;
        body = Body(new std::string(std::move(text)), [&alive](const std::string* done) {
            delete done;
            --alive;
        });
    }
    lock.lock();
    any_rendering_ = false;
    slot.rendering = false;
    ++slot.renders;
    if (body) {
        slot.newest = body;
        slot.newest_rendered = Clock::now();
    } else {
        slot.newest_rendered = Clock::time_point{};  // waiters render their own
    }
    rendered_.notify_all();
    if (failure) std::rethrow_exception(failure);
    return body;
}

}  // namespace tcpstatesd

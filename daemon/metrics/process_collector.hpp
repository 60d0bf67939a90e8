// The standard process_* metrics (as other Prometheus clients export them), read from /proc
// at collect time; prometheus-cpp has no such collector.
#pragma once

#include "exposition/collection.hpp"

#include <string>

namespace tcpstatesd {

class ProcessCollector : public Collector {
public:
    // `proc` is the procfs mount; tests pass a directory holding fake self/stat and stat files.
    explicit ProcessCollector(std::string proc = "/proc");

    // Never throws: a file that cannot be read or parsed drops the metrics that depend on it
    // (logged at debug level).
    Collection collect() const override;

private:
    std::string proc_;
};

}  // namespace tcpstatesd

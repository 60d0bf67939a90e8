// Reads a body in the Prometheus protobuf format with libprotobuf and the code protoc generated
// from the schema (tests/CMakeLists.txt): a reader independent of the daemon's writer.
#pragma once

#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <io/prometheus/client/metrics.pb.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace tcpstatesd::test {

// The MetricFamily messages of a delimited stream; fails the test unless the whole stream is
// read.
inline std::vector<io::prometheus::client::MetricFamily> decode_delimited(const std::string& body) {
    google::protobuf::io::ArrayInputStream input(body.data(), static_cast<int>(body.size()));
    std::vector<io::prometheus::client::MetricFamily> families;
    for (;;) {
        io::prometheus::client::MetricFamily family;
        bool clean_eof = false;
        if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&family, &input,
                                                                      &clean_eof)) {
            REQUIRE(clean_eof);  // else a message was cut or malformed
            return families;
        }
        families.push_back(family);
    }
}

}  // namespace tcpstatesd::test

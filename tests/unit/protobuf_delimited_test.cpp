#include "exposition/protobuf_delimited.hpp"

#include <catch2/catch.hpp>
#include <cmath>

#include "metric_families.hpp"
#include "protobuf_reader.hpp"

using tcpstatesd::protobuf_delimited;
using tcpstatesd::test::decode_delimited;
using tcpstatesd::test::sample_families;
namespace dto = io::prometheus::client;

TEST_CASE("protobuf: MetricFamily messages as the schema reads them") {
    const auto families = decode_delimited(protobuf_delimited({sample_families(), {}}));
    // The family without series carries no sample: client libraries send none such.
    REQUIRE(families.size() == 3);

    const dto::MetricFamily& counter = families[0];
    CHECK(counter.name() == "test_events_total");  // as client_golang names counters
    CHECK(counter.help() == "Events, \"quoted\" \\ and\nnewline.");
    CHECK(counter.type() == dto::COUNTER);
    REQUIRE(counter.metric_size() == 2);
    REQUIRE(counter.metric(0).label_size() == 2);
    CHECK(counter.metric(0).label(0).name() == "path");
    CHECK(counter.metric(0).label(0).value() == "a\"b\\c\nd");
    CHECK(counter.metric(0).label(1).name() == "kind");
    CHECK(counter.metric(0).label(1).value() == "x");
    CHECK(counter.metric(0).counter().value() == 3);
    CHECK(counter.metric(1).counter().value() == 0.1 + 0.2);  // exact: a double on the wire
    CHECK_FALSE(counter.metric(0).has_gauge());
    CHECK_FALSE(counter.metric(0).has_timestamp_ms());

    const dto::MetricFamily& gauge = families[1];
    CHECK(gauge.name() == "test_size_bytes");
    CHECK(gauge.type() == dto::GAUGE);
    REQUIRE(gauge.metric_size() == 1);
    CHECK(gauge.metric(0).label_size() == 0);
    CHECK(gauge.metric(0).gauge().value() == 1234567.891);

    const dto::MetricFamily& histogram = families[2];
    CHECK(histogram.name() == "test_duration_seconds");
    CHECK(histogram.type() == dto::HISTOGRAM);
    REQUIRE(histogram.metric_size() == 1);
    const dto::Histogram& h = histogram.metric(0).histogram();
    CHECK(h.sample_count() == 4);
    CHECK(h.sample_sum() == 5007.25);
    // The classic buckets, cumulative, without +Inf (sample_count is its count); no native
    // histogram field set, so a Prometheus with native histograms reads the classic ones.
    REQUIRE(h.bucket_size() == 2);
    CHECK(h.bucket(0).upper_bound() == 1e-05);
    CHECK(h.bucket(0).cumulative_count() == 1);
    CHECK(h.bucket(1).upper_bound() == 1);
    CHECK(h.bucket(1).cumulative_count() == 2);
    CHECK_FALSE(h.has_schema());
    CHECK_FALSE(h.has_zero_threshold());
    CHECK(h.positive_span_size() == 0);
}

TEST_CASE("protobuf: no families, no bytes") {
    CHECK(protobuf_delimited(tcpstatesd::Collection{}).empty());
}

TEST_CASE("protobuf: an exemplar in the bucket its value falls in, +Inf written to carry one") {
    // sample_families()' histogram: buckets 1e-05, 1, +Inf (the third family).
    tcpstatesd::Collection collection{sample_families(), {}};
    collection.extras[{2, 0}].exemplar = tcpstatesd::Exemplar{
        {{"local", "[::1]:443"}, {"remote", "[::1]:51234"}}, 0.25, 1733472000123};
    auto families = decode_delimited(protobuf_delimited(collection));
    REQUIRE(families.size() == 3);
    const dto::Histogram& h = families[2].metric(0).histogram();
    REQUIRE(h.bucket_size() == 2);
    CHECK_FALSE(h.bucket(0).has_exemplar());
    REQUIRE(h.bucket(1).has_exemplar());
    const dto::Exemplar& e = h.bucket(1).exemplar();
    REQUIRE(e.label_size() == 2);
    CHECK(e.label(0).name() == "local");
    CHECK(e.label(0).value() == "[::1]:443");
    CHECK(e.label(1).name() == "remote");
    CHECK(e.label(1).value() == "[::1]:51234");
    CHECK(e.value() == 0.25);
    CHECK(e.timestamp().seconds() == 1733472000);
    CHECK(e.timestamp().nanos() == 123000000);

    // Slower than the last bound: the +Inf bucket, otherwise implied, carries it.
    collection.extras[{2, 0}].exemplar->value = 5;
    families = decode_delimited(protobuf_delimited(collection));
    const dto::Histogram& inf = families[2].metric(0).histogram();
    REQUIRE(inf.bucket_size() == 3);
    CHECK(std::isinf(inf.bucket(2).upper_bound()));
    CHECK(inf.bucket(2).cumulative_count() == 4);
    CHECK(inf.bucket(2).exemplar().value() == 5);
    CHECK_FALSE(inf.bucket(1).has_exemplar());
}

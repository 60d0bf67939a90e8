#include "exposition/exposition_format.hpp"

#include <catch2/catch.hpp>
#include <string>

using tcpstatesd::ExpositionFormat;
using tcpstatesd::negotiate_format;

// The Accept headers Prometheus 2.42 sends, as captured from it: by default, and with
// --enable-feature=native-histograms.
constexpr const char* kPrometheusDefault =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
constexpr const char* kPrometheusNativeHistograms =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

TEST_CASE("exposition format: Prometheus' own Accept headers") {
    CHECK(negotiate_format(kPrometheusDefault) == ExpositionFormat::OpenMetrics);
    CHECK(negotiate_format(kPrometheusNativeHistograms) == ExpositionFormat::Protobuf);
}

TEST_CASE("exposition format: the text format unless a served format is asked for") {
    CHECK(negotiate_format(nullptr) == ExpositionFormat::Text);
    CHECK(negotiate_format("") == ExpositionFormat::Text);
    CHECK(negotiate_format("*/*") == ExpositionFormat::Text);
    CHECK(negotiate_format("text/plain") == ExpositionFormat::Text);
    CHECK(negotiate_format("application/json") == ExpositionFormat::Text);
    CHECK(negotiate_format(",;=,q=") == ExpositionFormat::Text);
    // Versions and encodings not served.
    CHECK(negotiate_format("application/openmetrics-text;version=0.0.1") == ExpositionFormat::Text);
    CHECK(negotiate_format("application/vnd.google.protobuf;"
                           "proto=io.prometheus.client.MetricFamily;encoding=text") ==
          ExpositionFormat::Text);
    CHECK(negotiate_format("application/vnd.google.protobuf;encoding=delimited") ==
          ExpositionFormat::Text);
    // q=0 means not acceptable; a q that is no number in 0..1 counts as 0.
    CHECK(negotiate_format("application/openmetrics-text;q=0") == ExpositionFormat::Text);
    CHECK(negotiate_format("application/openmetrics-text;q=2") == ExpositionFormat::Text);
    CHECK(negotiate_format("application/openmetrics-text;q=x") == ExpositionFormat::Text);
}

TEST_CASE("exposition format: the highest q wins, the first listed on a tie") {
    CHECK(negotiate_format("text/plain;q=0.9, application/openmetrics-text;q=0.5") ==
          ExpositionFormat::Text);
    CHECK(negotiate_format("text/plain;q=0.5, application/openmetrics-text") ==
          ExpositionFormat::OpenMetrics);
    CHECK(negotiate_format("application/openmetrics-text, text/plain") ==
          ExpositionFormat::OpenMetrics);
    CHECK(negotiate_format("text/plain, application/openmetrics-text") == ExpositionFormat::Text);
}

TEST_CASE(
    "exposition format: media types and parameter names ignore case, values may be "
    "quoted") {
    CHECK(negotiate_format("Application/OpenMetrics-Text; Version=\"1.0.0\"") ==
          ExpositionFormat::OpenMetrics);
    CHECK(negotiate_format("application/vnd.google.protobuf; PROTO=\"io.prometheus.client."
                           "MetricFamily\"; Encoding=delimited; q=0.3") ==
          ExpositionFormat::Protobuf);
}

TEST_CASE("exposition format: content types") {
    CHECK(std::string(content_type(ExpositionFormat::Text)) ==
          "text/plain; version=0.0.4; charset=utf-8");
    CHECK(std::string(content_type(ExpositionFormat::OpenMetrics)) ==
          "application/openmetrics-text; version=1.0.0; charset=utf-8");
    CHECK(std::string(content_type(ExpositionFormat::Protobuf)) ==
          "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
          "encoding=delimited");
}

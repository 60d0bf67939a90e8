#include <catch2/catch.hpp>

#include "config/port_list.hpp"

using tcpstatesd::parse_port_list;

TEST_CASE("port lists: single ports, ranges, sorted without duplicates") {
    CHECK(parse_port_list("80") == std::vector<uint16_t>{80});
    CHECK(parse_port_list("443,80,80") == std::vector<uint16_t>{80, 443});
    CHECK(parse_port_list("8000-8003,1") == std::vector<uint16_t>{1, 8000, 8001, 8002, 8003});
    CHECK(parse_port_list("65535") == std::vector<uint16_t>{65535});
}

TEST_CASE("port lists: invalid items are rejected with the item named") {
    CHECK_THROWS_WITH(parse_port_list(""), Catch::Contains("empty"));
    CHECK_THROWS_WITH(parse_port_list("0"), Catch::Contains("'0'"));
    CHECK_THROWS_WITH(parse_port_list("65536"), Catch::Contains("'65536'"));
    CHECK_THROWS_WITH(parse_port_list("80,,443"), Catch::Contains("invalid port ''"));
    CHECK_THROWS_WITH(parse_port_list("http"), Catch::Contains("'http'"));
    CHECK_THROWS_WITH(parse_port_list("80x"), Catch::Contains("'80x'"));
    CHECK_THROWS_WITH(parse_port_list("9-3"), Catch::Contains("'9-3'"));
    CHECK_THROWS_WITH(parse_port_list("-5"), Catch::Contains("'-5'"));
}

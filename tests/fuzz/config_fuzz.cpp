// libFuzzer target for the configuration parser: parse_config on arbitrary bytes must
// return a Config or throw ConfigError; any other exception, a crash, a sanitizer finding or
// a hang is a bug. Built by the `fuzz` preset (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        tcpstatesd::parse_config(text, "fuzz.yaml");
    } catch (const tcpstatesd::ConfigError&) {
        // The one error the daemon expects from a bad file.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parse_config threw something other than ConfigError: %s\n", e.what());
        std::abort();
    }
    return 0;
}

// libFuzzer target for the web config parser (--web.config.file): parse_web_config on
// arbitrary bytes must return a WebSecurity or throw ConfigError; any other exception, a crash,
// a sanitizer finding or a hang is a bug. Built by the `fuzz` preset.
//
// The parser opens the certificate files an input names. Relative names resolve into an
// empty scratch directory (so they fail to open, or open the directory itself); an input that
// could name any other path (a "/", or a "\" that a quoted scalar could escape into one) is
// skipped, so that a fuzzed path never opens a FIFO or a terminal and blocks the run.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "config/web_config.hpp"
#include "temp_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const tcpstatesd::test::TempDir base;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (text.find_first_of("/\\") != std::string_view::npos) return -1;  // not added to corpus
    try {
        tcpstatesd::parse_web_config(text, "fuzz.yml", base.path());
    } catch (const tcpstatesd::ConfigError&) {
        // The one error the daemon expects from a bad file.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parse_web_config threw something other than ConfigError: %s\n",
                     e.what());
        std::abort();
    }
    return 0;
}

#include "common/command_line.hpp"

#include <stdexcept>
#include <string>

namespace tcpstatesd {

void for_each_option(int argc, char** argv, const char* short_options, const option* long_options,
                     const std::function<void(int)>& handle, const char* help_command) {
    const std::string see = std::string(" (see ") + help_command + ")";
    opterr = 0;  // errors are thrown, not printed by getopt
    optind = 0;  // 0, not 1: makes glibc's getopt start afresh on every call
    for (;;) {
        // The element getopt is about to read, to name it in an error.
        const int previous = optind == 0 ? 1 : optind;
        const int c = getopt_long(argc, argv, short_options, long_options, nullptr);
        if (c == -1) break;
        if (c == ':')
            throw std::invalid_argument(std::string("option ") + argv[previous] + " needs a value");
        if (c == '?')
            // An unknown letter in a group such as -4x is named alone.
            throw std::invalid_argument("unknown option " +
                                        (optopt > 0 && optopt < 128
                                             ? std::string("-") + char(optopt)
                                             : std::string(argv[previous])) +
                                        see);
        handle(c);
    }
    if (optind < argc)
        throw std::invalid_argument(std::string("unexpected argument ") + argv[optind] + see);
}

}  // namespace tcpstatesd

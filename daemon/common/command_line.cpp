#include "common/command_line.hpp"

#include <getopt.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace tcpstatesd {

CommandOption::CommandOption(const char* long_name, char short_letter, std::function<void()> set)
    : name(long_name),
      letter(short_letter),
      takes_value(false),
      apply([set = std::move(set)](const char*) { set(); }) {}

CommandOption::CommandOption(const char* long_name, char short_letter,
                             std::function<void(const char* value)> set)
    : name(long_name), letter(short_letter), takes_value(true), apply(std::move(set)) {}

void parse_command_line(int argc, char** argv, const std::vector<CommandOption>& options,
                        const char* help_command) {
    // getopt's tables: a long-only option is known by a value above every letter, 256 + its
    // index. "+": stop at the first argument; ":": report a missing value as ':'.
    constexpr int kFirstLongOnly = 256;
    std::string short_options = "+:";
    std::vector<option> long_options;
    for (size_t i = 0; i < options.size(); ++i) {
        const CommandOption& o = options[i];
        if (o.letter != kLongOnly)
            short_options += std::string(1, o.letter) + (o.takes_value ? ":" : "");
        long_options.push_back({o.name, o.takes_value ? required_argument : no_argument, nullptr,
                                o.letter != kLongOnly ? o.letter : kFirstLongOnly + int(i)});
    }
    long_options.push_back({nullptr, 0, nullptr, 0});

    const std::string see = std::string(" (see ") + help_command + ")";
    opterr = 0;  // errors are thrown, not printed by getopt
    optind = 0;  // 0, not 1: makes glibc's getopt start afresh on every call
    for (;;) {
        // The element getopt is about to read, to name it in an error.
        const int previous = optind == 0 ? 1 : optind;
        const int c = getopt_long(argc, argv, short_options.c_str(), long_options.data(), nullptr);
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
        for (size_t i = 0; i < options.size(); ++i)
            if (c == long_options[i].val) options[i].apply(optarg);
    }
    if (optind < argc)
        throw std::invalid_argument(std::string("unexpected argument ") + argv[optind] + see);
}

}  // namespace tcpstatesd

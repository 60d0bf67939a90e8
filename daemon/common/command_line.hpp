// The one parser of a command line's options, for the daemon's and `trace`'s: each option
// defined once, in a table of what it does; getopt_long underneath, with the errors thrown in
// one format, never printed by getopt.
#pragma once

#include <functional>
#include <vector>

namespace tcpstatesd {

// An option's letter when it has only its long name.
constexpr char kLongOnly = 0;

// One option: its long name (without "--"), its letter (or kLongOnly) and what it does. One
// whose handler takes the value needs one ("--name VALUE", "--name=VALUE", "-x VALUE").
struct CommandOption {
    CommandOption(const char* name, char letter, std::function<void()> set);
    CommandOption(const char* name, char letter, std::function<void(const char* value)> set);

    const char* name;
    char letter;
    bool takes_value;
    std::function<void(const char* value)> apply;  // value: nullptr when it takes none
};

// Applies each option found on the command line (argv[0] is the command), in their order.
// Stops at the first argument that is not an option. Throws std::invalid_argument for an
// option without its value, an unknown option or an argument left over, each naming it and
// pointing to `help_command` (e.g. "tcpstatesd trace --help"), and whatever an option's
// handler throws.
void parse_command_line(int argc, char** argv, const std::vector<CommandOption>& options,
                        const char* help_command);

}  // namespace tcpstatesd

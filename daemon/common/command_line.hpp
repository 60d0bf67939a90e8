// The one loop over a command line's options, for the daemon's and `trace`'s: getopt_long
// with the errors thrown in one format, never printed by getopt.
#pragma once

#include <getopt.h>

#include <functional>

namespace tcpstatesd {

// Gives each option getopt_long finds to `handle` (its letter or long option's value; optarg
// set for one with a value). `short_options` starts with "+:" (stop at the first argument;
// report a missing value as ':'). Throws std::invalid_argument for an option without its
// value, an unknown option or an argument left over, each naming it and pointing to
// `help_command` (e.g. "tcpstatesd trace --help").
void for_each_option(int argc, char** argv, const char* short_options, const option* long_options,
                     const std::function<void(int)>& handle, const char* help_command);

}  // namespace tcpstatesd

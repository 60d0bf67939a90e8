// The one way the daemon turns a YAML file into a node (the configuration, the web config):
// bounded in size and nesting before yaml-cpp sees a byte, exactly one document, and never
// into yaml-cpp 0.7's endless LoadAll. Errors are ConfigError "source:line:column: what".
#pragma once

#include <yaml-cpp/node/node.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace tcpstatesd {

// A configuration is a few KiB, a PEM bundle of CA certificates a few hundred; the bound stops a
// path like /dev/zero from taking the daemon's memory.
constexpr size_t kMaxConfigFileBytes = 1u << 20;

// The whole file, at most kMaxConfigFileBytes. A ConfigError names `kind` ("configuration
// file", "web config file"), the path and the reason: "cannot open KIND PATH: REASON".
std::string read_config_file(const std::string& path, const std::string& kind);

// Parses `text` as one YAML document; an empty text is a null node. `source` is the file name
// errors begin with; `document` names what a second document is not ("the configuration").
YAML::Node load_yaml_document(std::string_view text, const std::string& source,
                              const std::string& document);

}  // namespace tcpstatesd

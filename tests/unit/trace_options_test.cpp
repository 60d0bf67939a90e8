#include "trace/trace_options.hpp"

#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

using namespace tcpstatesd;

namespace {

TraceOptions parse(std::initializer_list<const char*> args) {
    std::vector<std::string> storage{"trace"};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : storage) argv.push_back(s.data());
    argv.push_back(nullptr);
    return parse_trace_options(static_cast<int>(storage.size()), argv.data());
}

std::string error_of(std::initializer_list<const char*> args) {
    try {
        parse(args);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("trace options: none given") {
    const auto o = parse({});
    CHECK_FALSE(o.help);
    CHECK(o.bpf.filters == EventFilters{});
    CHECK(o.bpf.transport == Transport::Auto);
    CHECK(o.bpf.btf_path.empty());
    CHECK_FALSE(o.bpf.resets);
    CHECK_FALSE(o.bpf.retransmits);
    CHECK_FALSE(o.format.json);
}

TEST_CASE(
    "trace options: --reason attaches the reset programs, which tell aborts, but prints no "
    "reset line; not with --btf.path") {
    const auto o = parse({"--reason"});
    CHECK((o.bpf.resets && !o.format.resets));
    const auto with_file = parse({"--reason", "--btf.path", "/x"});
    CHECK((with_file.format.reason && !with_file.bpf.resets));
}

TEST_CASE("trace options: each option, short and long") {
    const auto o =
        parse({"-6", "-L", "80,443", "--remoteport=8000-8002", "-Tw", "--json", "--cgroup",
               "--reason", "--resets", "--retransmits", "--transport", "perfbuf"});
    CHECK(o.bpf.filters.family == AF_INET6);
    CHECK(o.bpf.filters.local_ports == std::vector<uint16_t>{80, 443});
    CHECK(o.bpf.filters.remote_ports == std::vector<uint16_t>{8000, 8001, 8002});
    CHECK(o.format.timestamp);
    CHECK(o.format.wide);
    CHECK(o.format.json);
    CHECK(o.format.cgroup);
    CHECK(o.format.reason);
    CHECK((o.format.resets && o.bpf.resets));
    CHECK((o.format.retransmits && o.bpf.retransmits));
    CHECK(o.bpf.transport == Transport::PerfBuffer);
    CHECK(parse({"--ipv4"}).bpf.filters.family == AF_INET);
    CHECK(parse({"--btf.path", "/b"}).bpf.btf_path == "/b");
    CHECK(parse({"-h"}).help);
    CHECK(parse({"--help"}).help);
}

TEST_CASE("trace options: errors in the daemon's words, naming the option") {
    CHECK(error_of({"--no-such-option"}) ==
          "unknown option --no-such-option (see tcpstatesd trace --help)");
    CHECK(error_of({"-4x"}) == "unknown option -x (see tcpstatesd trace --help)");
    CHECK(error_of({"-L"}) == "option -L needs a value");
    CHECK(error_of({"--transport"}) == "option --transport needs a value");
    CHECK(error_of({"stray"}) == "unexpected argument stray (see tcpstatesd trace --help)");
    CHECK(error_of({"-L", "70000"}).rfind("--localport: invalid port '70000'", 0) == 0);
    CHECK(error_of({"-D", "http"}).rfind("--remoteport: ", 0) == 0);
    CHECK(error_of({"--transport", "pigeon"}) ==
          "--transport: unknown transport 'pigeon' (auto, ringbuf or perfbuf)");
    CHECK(error_of({"--btf.path", ""}) == "--btf.path: needs a file path");
    CHECK(error_of({"--resets", "--btf.path", "/x"}) ==
          "--resets and --retransmits need the kernel's own BTF (/sys/kernel/btf/vmlinux), "
          "not --btf.path");
    // The parser starts afresh each time: a good line after bad ones.
    CHECK(parse({"-L", "22"}).bpf.filters.local_ports == std::vector<uint16_t>{22});
}

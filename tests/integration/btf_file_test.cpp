// The BTF file of --btf.path / events.btf_path as the program loader meets it: the
// configuration refuses anything but a regular file, but the path can change between that
// check and the load. What is there at the load is opened without blocking and refused unless
// it is a regular file (a FIFO would otherwise hold the start for ever: this test would hang).
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <string>

#include "kernel/bpf_program.hpp"
#include "require_bpf.hpp"
#include "temp_dir.hpp"

TEST_CASE("a BTF path that became a FIFO after the configuration check is refused at once",
          "[btf]") {
    REQUIRE_BPF();
    const tcpstatesd::test::TempDir dir;
    const std::string fifo = dir.path() + "/vmlinux.btf";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    tcpstatesd::BpfOptions options;
    options.btf_path = fifo;
    CHECK_THROWS_WITH(tcpstatesd::BpfProgram(options),
                      "BTF file " + fifo +
                          " (--btf.path / events.btf_path) not readable: not a regular file; "
                          "give a raw BTF file for this kernel (as BTFHub provides) or an ELF "
                          "file with a .BTF section");
}

#!/usr/bin/env bash
# Fails when a C++ source differs from what clang-format makes of it (.clang-format; bpf/ is
# kernel style, kept by hand, and excluded by bpf/.clang-format).
set -euo pipefail
cd "$1"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.c' '*.h' | grep -v '^tests/fuzz/corpus/')
clang-format --dry-run -Werror "${files[@]}"
echo "clang-format: ${#files[@]} files formatted"

#!/usr/bin/env bash
# Runs clang-tidy with the checks of .clang-tidy (warnings are errors) over daemon/, using the
# build's compile_commands.json. Usage: clang_tidy.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$1 build_dir=$2
cd "$source_dir"
mapfile -t files < <(git ls-files 'daemon/*.cpp')
# Two at a time: the machines have two cores.
printf '%s\n' "${files[@]}" | xargs -P2 -n1 clang-tidy -p "$build_dir" --quiet
echo "clang-tidy: ${#files[@]} files clean"

#!/usr/bin/env python3
"""clang-tidy with the checks of .clang-tidy (warnings are errors) over daemon/*.cpp, using the
build's compile_commands.json, on the files whose result is not known already.

Usage: clang_tidy.py SOURCE_DIR BUILD_DIR

A file that passed is recorded in CACHE under a key of everything clang-tidy's result depends
on: clang-tidy and the library it parses with (their contents), .clang-tidy, the file's compile
command, and the file preprocessed by clang with that command, comments kept (so every header
it includes, and every NOLINT, is in the key), with the source and build directories' paths
left out (a clone elsewhere of the same tree has the same keys). While the key stays the same the file is not
checked again; any change to it, a header's included, checks it again. A file with a finding is
never recorded: it fails every run until it is fixed. The cache is per user and outlives the
build tree, as ccache's does (a fresh clone of an unchanged tree checks nothing again); delete
it to start over. Entries unused for 30 days are removed.

clang-tidy runs two files at a time (two cores) at the lowest priority (nice 19): it is the
heaviest test, and the tests beside it that time what they do go first.
"""
import concurrent.futures
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "tcpstatesd", "clang-tidy-passed")
UNUSED_DAYS = 30


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tool_digest():
    """The clang-tidy binary and the clang library it parses with."""
    binary = os.path.realpath(shutil.which("clang-tidy") or sys.exit("clang-tidy is not installed"))
    libraries = [line.split("=>")[1].split()[0] for line in subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True).stdout.splitlines()
        if "libclang" in line or "libLLVM" in line]
    return "\n".join(f"{path} {file_digest(path)}" for path in [binary, *libraries])


def compile_arguments(entry):
    return entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])


def preprocessed(entry):
    """The file as clang preprocesses it with its compile command, comments kept."""
    arguments = compile_arguments(entry)[1:]
    kept = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "-o":
            skip = True
        elif argument != "-c":
            kept.append(argument)
    result = subprocess.run(["clang++", *kept, "-E", "-C", "-o", "-"], cwd=entry["directory"],
                            capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"clang++ -E {entry['file']} failed:\n{result.stderr.decode()}")
    return result.stdout


def key(common, entry, directories):
    """The key of a file's result: `common` (the tools, .clang-tidy), its compile command and
    its preprocessed text, with each of `directories` ((path, placeholder), the longest path
    first) replaced by its placeholder."""
    def placeholders(data):
        for directory, placeholder in directories:
            data = data.replace(directory.encode(), placeholder.encode())
        return data
    digest = hashlib.sha256(common.encode())
    digest.update(placeholders(json.dumps(compile_arguments(entry)).encode()))
    digest.update(placeholders(preprocessed(entry)))
    return digest.hexdigest()


def tidy(build_dir, path):
    """(path, passed, output) of clang-tidy on one file."""
    result = subprocess.run(["nice", "-n", "19", "clang-tidy", "-p", build_dir, "--quiet", path],
                            capture_output=True, text=True)
    return path, result.returncode == 0, (result.stdout + result.stderr).strip()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source_dir, build_dir = (os.path.realpath(a) for a in sys.argv[1:])
    files = subprocess.run(["git", "ls-files", "daemon/*.cpp"], cwd=source_dir,
                           capture_output=True, text=True, check=True).stdout.split()
    with open(os.path.join(build_dir, "compile_commands.json")) as f:
        entries = {entry["file"]: entry for entry in json.load(f)}
    with open(os.path.join(source_dir, ".clang-tidy")) as f:
        common = tool_digest() + "\n" + f.read()
    os.makedirs(CACHE, exist_ok=True)
    # The longer first: the build directory may lie inside the source directory.
    directories = sorted([(source_dir, "<source>"), (build_dir, "<build>")],
                         key=lambda d: len(d[0]), reverse=True)

    started = time.monotonic()
    paths = [os.path.join(source_dir, name) for name in files]
    missing = [p for p in paths if p not in entries]
    if missing:
        sys.exit(f"not in {build_dir}/compile_commands.json: {missing}")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        keys = dict(zip(paths, pool.map(lambda p: key(common, entries[p], directories), paths)))
    to_check = []
    for path in paths:
        recorded = os.path.join(CACHE, keys[path])
        if os.path.exists(recorded):
            os.utime(recorded)
        else:
            to_check.append(path)
    keyed = time.monotonic() - started

    failed = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for path, passed, output in pool.map(lambda p: tidy(build_dir, p), to_check):
            if output:
                print(output)
            if not passed:
                failed.append(os.path.relpath(path, source_dir))
            # Recorded only if the file (or a header) did not change while it was checked.
            elif key(common, entries[path], directories) == keys[path]:
                open(os.path.join(CACHE, keys[path]), "w").close()
    subprocess.run(["find", CACHE, "-type", "f", "-mtime", f"+{UNUSED_DAYS}", "-delete"],
                   check=True)
    print(f"clang-tidy: {len(paths)} files, {len(paths) - len(to_check)} passed before unchanged "
          f"(keys in {keyed:.1f} s), {len(to_check)} checked in "
          f"{time.monotonic() - started - keyed:.1f} s; cache {CACHE}")
    if failed:
        sys.exit(f"clang-tidy findings in {len(failed)} files: {failed}")


if __name__ == "__main__":
    main()

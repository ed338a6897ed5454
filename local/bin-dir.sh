#!/usr/bin/env sh
# The directory of the release binaries: <cargo's target directory>/release, which honours
# CARGO_TARGET_DIR and build.target-dir (what `make release` builds into). Used by `make local`,
# `make run` and `make install`.
set -eu
cd "$(dirname "$0")/.."
target=$(${CARGO:-cargo} metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || target=
echo "${target:-${CARGO_TARGET_DIR:-$PWD/target}}/release"

#!/usr/bin/env bash
# Sets up and runs meshfs for real on Debian 12: installs the dependencies,
# builds, and runs `meshfs demo`: three local storage peers on loopback, a new
# volume on them, and a FUSE mount you can use. Ctrl-C unmounts and stops.
# Usage: scripts/demo.sh [DIR] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target meshfs
exec build/release/cli/meshfs demo "$@"

#!/usr/bin/env bash
# Sets up and runs every meshfs test on Debian 12:
#   1. installs the dependencies (scripts/install-deps.sh),
#   2. Release build: unit tests, fuzz-corpus replays and end-to-end tests
#      (real `meshfs node` processes on loopback, real FUSE mounts),
#   3. Debug build with AddressSanitizer + UBSan: unit tests and replays,
#   4. clang libFuzzer build: a short fuzz run of every decoder.
# Options (environment): MESHFS_JOBS (default: nproc), MESHFS_FUZZ_SECONDS
# (default 15), MESHFS_SKIP_E2E=1, MESHFS_SKIP_FUZZ=1, MESHFS_SKIP_ASAN=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${MESHFS_JOBS:-$(nproc)}

bash scripts/install-deps.sh

configure() {  # configure DIR ARGS...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja -DMESHFS_WERROR=ON "$@" >/dev/null
}

echo "== Release build"
configure build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$jobs"
echo "== Release: unit tests"
ctest --test-dir build/release -L unit --output-on-failure -j "$jobs"
if [ "${MESHFS_SKIP_E2E:-0}" != 1 ]; then
  echo "== Release: end-to-end tests (real peers, real mounts)"
  ctest --test-dir build/release -L e2e --output-on-failure
fi

if [ "${MESHFS_SKIP_ASAN:-0}" != 1 ]; then
  echo "== Debug + AddressSanitizer/UBSan build"
  configure build/asan -DCMAKE_BUILD_TYPE=Debug -DMESHFS_SANITIZE=ON -DMESHFS_BENCH=OFF
  cmake --build build/asan -j "$jobs"
  echo "== ASan/UBSan: unit tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build/asan -L unit --output-on-failure -j "$jobs"
fi

if [ "${MESHFS_SKIP_FUZZ:-0}" != 1 ] && command -v clang++ >/dev/null; then
  echo "== libFuzzer smoke run (clang)"
  CC=clang CXX=clang++ configure build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHFS_FUZZ=ON \
    -DMESHFS_TESTS=OFF -DMESHFS_BENCH=OFF -DMESHFS_FUZZ_SECONDS="${MESHFS_FUZZ_SECONDS:-15}"
  cmake --build build/fuzz -j "$jobs"
  ctest --test-dir build/fuzz -L fuzz --output-on-failure
fi
echo "== all tests passed"

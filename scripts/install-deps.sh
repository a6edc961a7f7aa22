#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of meshfs on Debian 12.
# Idempotent: packages already present are left alone. Runs as root or via sudo.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config ninja-build clang libclang-rt-14-dev
  clang-format
  # libraries
  libfuse3-dev libsodium-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev libzstd-dev
  libmicrohttpd-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # runtime and end-to-end tests
  fuse3 sqlite3 rsync git fio attr acl python3 python3-pytest curl
  xz-utils tar procps psmisc util-linux
  # packaging tests: man page rendering and unit verification
  man-db groff-base systemd dpkg
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${1:-}" = "--bench" ]; then
  for p in gocryptfs cryfs rclone nginx-light libnginx-mod-http-dav-ext hyperfine; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

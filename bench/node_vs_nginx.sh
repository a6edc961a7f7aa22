#!/usr/bin/env bash
# PUT and GET of 1 MiB slices over loopback with 8 concurrent clients:
# `meshfs node` side by side with Debian's nginx (static GET, WebDAV PUT),
# same client (curl --parallel), same files, same disk. Prints both
# throughputs and the ratio. Starts and stops its own node and nginx (by PID).
#
# usage: bench/node_vs_nginx.sh
# env:   MESHFS_BIN (default build/release/cli/meshfs), COUNT slices per round
#        (256), ROUNDS (3; the best round counts), CLIENTS (8),
#        BENCH_DIR (parent of the scratch directory, default /tmp),
#        GET_PASSES (4: each GET round reads the set this many times, so a
#        round lasts long enough to time),
#        NGINX_WORKERS (auto).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BIN=${MESHFS_BIN:-$here/../build/release/cli/meshfs}
COUNT=${COUNT:-256}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
GET_PASSES=${GET_PASSES:-4}
WORKERS=${NGINX_WORKERS:-auto}
[ -x "$BIN" ] || { echo "node_vs_nginx: meshfs binary not found at $BIN (set MESHFS_BIN)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "node_vs_nginx: nginx not installed" >&2; exit 2; }

work=$(mktemp -d "${BENCH_DIR:-/tmp}/meshfs-bench.XXXXXX")
node_pid="" nginx_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # URL
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "node_vs_nginx: $1 did not come up" >&2
  return 1
}

# Slices: ROUNDS sets of COUNT random 1 MiB files, named by BLAKE2b-256.
echo "generating $((ROUNDS * COUNT)) slices of 1 MiB in $work ..." >&2
for r in $(seq "$ROUNDS"); do
  mkdir -p "$work/set$r"
  for i in $(seq "$COUNT"); do
    head -c 1048576 /dev/urandom > "$work/set$r/tmp"
    mv "$work/set$r/tmp" "$work/set$r/$(b2sum -l 256 "$work/set$r/tmp" | cut -d' ' -f1)"
  done
done

node_port=$(free_port)
"$BIN" node --data "$work/node" --listen "127.0.0.1:$node_port" 2> "$work/node.log" &
node_pid=$!
wait_http "http://127.0.0.1:$node_port/v1/ping"

nginx_port=$(free_port)
mkdir -p "$work/nginx-root/v1/slices" "$work/nginx-tmp"
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
sed -e "s|@USER@|$user_line|" -e "s|@WORK@|$work|g" -e "s|@PORT@|$nginx_port|g" -e "s|@WORKERS@|$WORKERS|g" \
  "$here/nginx_dav.conf.template" > "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" -e "$work/nginx-error.log" &
nginx_pid=$!
wait_http "http://127.0.0.1:$nginx_port/"

# run METHOD BASE_URL SET -> prints seconds; fails if any transfer is not 2xx.
run() {
  local method=$1 base=$2 set=$3 cfg="$work/curl.cfg" out="$work/codes"
  local passes=1
  [ "$method" = GET ] && passes=$GET_PASSES
  : > "$cfg"
  for _ in $(seq "$passes"); do
    for f in "$work/$set"/*; do
      local name=${f##*/}
      if [ "$method" = PUT ]; then
        printf 'upload-file = "%s"\n' "$f" >> "$cfg"
      fi
      printf 'url = "%s/v1/slices/%s"\noutput = "/dev/null"\n' "$base" "$name" >> "$cfg"
    done
  done
  local t0 t1
  t0=$(date +%s.%N)
  curl -s --no-progress-meter -Z --parallel-max "$CLIENTS" --parallel-immediate -H 'Expect:' \
    -w '%{http_code}\n' -K "$cfg" > "$out"
  t1=$(date +%s.%N)
  if grep -qv '^2' "$out"; then
    echo "node_vs_nginx: $method $base: $(grep -cv '^2' "$out") transfers failed ($(sort "$out" | uniq -c | tr '\n' ' '))" >&2
    return 1
  fi
  echo "$t0 $t1" | awk '{printf "%.4f\n", $2 - $1}'
}

node_url="http://127.0.0.1:$node_port"
nginx_url="http://127.0.0.1:$nginx_port"
best() { sort -n | awk 'NR == 1'; }
declare -A T
for op in PUT GET; do
  for srv in node nginx; do : > "$work/t.$op.$srv"; done
done
for r in $(seq "$ROUNDS"); do
  # Alternate who goes first so neither always gets the warmer cache.
  if [ $((r % 2)) -eq 1 ]; then order="node nginx"; else order="nginx node"; fi
  for srv in $order; do
    url=$node_url; [ "$srv" = nginx ] && url=$nginx_url
    run PUT "$url" "set$r" >> "$work/t.PUT.$srv"
  done
  for srv in $order; do
    url=$node_url; [ "$srv" = nginx ] && url=$nginx_url
    run GET "$url" "set$r" >> "$work/t.GET.$srv"
  done
done
for op in PUT GET; do
  for srv in node nginx; do
    T[$op.$srv]=$(best < "$work/t.$op.$srv")
    echo "$op $srv seconds per round: $(tr '\n' ' ' < "$work/t.$op.$srv")" >&2
  done
done

# Sanity: what the node stored is what was sent.
files=("$work/set1"/*)
sample=${files[0]##*/}
curl -s "$node_url/v1/slices/$sample" | cmp -s - "$work/set1/$sample" || {
  echo "node_vs_nginx: node returned different bytes for $sample" >&2; exit 1; }
cmp -s "$work/nginx-root/v1/slices/$sample" "$work/set1/$sample" || {
  echo "node_vs_nginx: nginx stored different bytes for $sample" >&2; exit 1; }

mib=$COUNT
printf '%-4s %14s %14s %8s   (%d x 1 MiB, %d clients, best of %d, data in %s)\n' \
  op "node MiB/s" "nginx MiB/s" ratio "$COUNT" "$CLIENTS" "$ROUNDS" "${BENCH_DIR:-/tmp}"
for op in PUT GET; do
  m=$mib
  [ "$op" = GET ] && m=$((mib * GET_PASSES))
  awk -v op="$op" -v n="${T[$op.node]}" -v g="${T[$op.nginx]}" -v m="$m" \
    'BEGIN { printf "%-4s %14.1f %14.1f %7.0f%%\n", op, m / n, m / g, 100 * g / n }'
done

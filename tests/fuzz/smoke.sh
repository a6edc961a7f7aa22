#!/usr/bin/env bash
# Short libFuzzer run of one target: smoke.sh BINARY SEED_CORPUS SECONDS
# Works on a scratch copy of the seed corpus so the repository is untouched.
set -euo pipefail
bin=$1 seeds=$2 secs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
"$bin" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 "$work" 2>&1 | tail -n 12

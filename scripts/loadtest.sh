#!/usr/bin/env bash
# Load test with the release builds: `make loadtest` (a short fan-out against livego-rs) and
# `make compare` (the same scenario against livego-rs, nginx-rtmp and, given LIVEGO=path, the
# Go livego, one after the other; prints ratios and writes JSON + SVG under target/loadtest/).
# Usage: scripts/loadtest.sh MODE(loadtest|compare) [extra livego-loadtest flags...]
# Environment: PLAYERS (comma list), DURATION, KBIT, SCENARIO, PROTO, THREADS, LIVEGO,
# REPEAT (rounds; medians over them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-loadtest}
shift || true
players=${PLAYERS:-100}
duration=${DURATION:-20}
kbit=${KBIT:-600}
scenario=${SCENARIO:-fanout}
proto=${PROTO:-rtmp}
threads=${THREADS:-1}
repeat=${REPEAT:-1}
rounds=""
if [ "$repeat" != 1 ]; then rounds=" x$repeat rounds"; fi

case "$mode" in
  loadtest) servers=livego-rs ;;
  compare)
    servers=livego-rs
    if [ "$proto" = rtmp ]; then servers+=",nginx-rtmp"; fi
    if [ -n "${LIVEGO:-}" ]; then servers+=",livego=$LIVEGO"; fi
    ;;
  *) echo "usage: $0 loadtest|compare [flags]" >&2; exit 2 ;;
esac

out=target/loadtest
mkdir -p "$out"
json="$out/$mode-$scenario-$proto-${kbit}k-$(date +%Y%m%d-%H%M%S).json"
echo "loadtest: $scenario $proto players=$players ${kbit} kbit/s ${duration}s$rounds servers=$servers" \
  "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores:" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
exec ./target/release/livego-loadtest "$scenario" --server "$servers" --players "$players" \
  --duration "$duration" --kbit "$kbit" --proto "$proto" --threads "$threads" \
  --repeat "$repeat" --json "$json" "$@"

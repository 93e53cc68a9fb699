#!/usr/bin/env bash
# Fan-out load test: starts the release server on free loopback ports, publishes looped test
# media with ffmpeg (the real encoder path), runs N native RTMP players and prints the report.
# Usage: scripts/loadtest.sh [PLAYERS=100] [DURATION_SECONDS=20] [BITRATE=600k] [SHARDS=0]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

players=${1:-100}
duration=${2:-20}
bitrate=${3:-600k}
shards=${4:-0}

media_dir=target/loadtest-media
media="$media_dir/testsrc-$bitrate.flv"
mkdir -p "$media_dir"
if [ ! -f "$media" ]; then
  ffmpeg -nostdin -loglevel error -f lavfi -i "testsrc2=size=1280x720:rate=25" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100" -t 30 \
    -c:v libx264 -preset veryfast -g 50 -bf 0 -b:v "$bitrate" -maxrate "$bitrate" -bufsize "$bitrate" \
    -c:a aac -b:a 64k -f flv "$media.tmp"
  mv "$media.tmp" "$media"
fi

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
rtmp=$(free_port); flv=$(free_port); hls=$(free_port); api=$(free_port)
work=$(mktemp -d)
cat > "$work/livego.toml" <<CFG
rtmp_addr = "127.0.0.1:$rtmp"
httpflv_addr = "127.0.0.1:$flv"
hls_addr = "127.0.0.1:$hls"
api_addr = "127.0.0.1:$api"
level = "warn"
[shards]
count = $shards
[[server]]
appname = "live"
live = true
hls = true
flv = true
api = true
CFG

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

./target/release/livego --config_file "$work/livego.toml" 2>"$work/server.log" &
server=$!; pids+=("$server")
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$api") 2>/dev/null && break
  sleep 0.1
done
key=$(curl -s "http://127.0.0.1:$api/control/get?room=load" | python3 -c 'import json,sys;print(json.load(sys.stdin)["data"])')
ffmpeg -nostdin -loglevel error -re -stream_loop -1 -i "$media" -c copy -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
pids+=("$!")
sleep 2
echo "loadtest: $players players, ${duration}s, $bitrate, shards=$shards, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >&2
./target/release/livego-loadtest fanout --url "rtmp://127.0.0.1:$rtmp/live/load" \
  --players "$players" --duration "$duration" --server-pid "$server"

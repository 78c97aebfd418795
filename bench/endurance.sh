#!/usr/bin/env bash
# Endurance run (not part of CI): at least one million mixed requests
# against one aigw process, sampling its RSS every second. Mixed means:
# plain and streamed chats over HTTP/1.1 and h2c, the /chat shape, webhook
# calls, bad input (broken and duplicate-key JSON), a failing upstream
# (connection refused, retried, then a fallback), unknown models, and
# clients that leave in the middle of a stream.
#   bench/endurance.sh [TOTAL_REQUESTS]     (default 1000000)
# Prints RSS at start, after warm-up (the first 20% of requests) and at the
# end, the growth after warm-up, the outcome counts, and whether aigw
# survived (exit 0 only if it did and growth stayed under 1 MiB).
set -uo pipefail
cd "$(dirname "$0")/.."
total=${1:-1000000}
aigw=${AIGW:-build/aigw}
command -v h2load >/dev/null || { echo "needs h2load (nghttp2-client)"; exit 1; }
[ -x "$aigw" ] || { echo "build aigw first (ninja -C build aigw) or set AIGW="; exit 1; }

work=$(mktemp -d /tmp/aigw-endurance.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() { kill "$pid" "$sampler" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP_RSS:-}" ] && cp "$work/rss.log" "$KEEP_RSS"; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

"$aigw" --config tests/valgrind/aigw-load.conf --listen 127.0.0.1:$port 2>"$work/aigw.err" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null; }
( while kill -0 $pid 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 1; done ) >"$work/rss.log" &
sampler=$!

body() { printf '%s' "$1" >"$work/$2"; }
body '{"model":"mock","messages":[{"role":"user","content":"hello endurance"}]}' plain.json
body '{"model":"mock","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream me please"}]}' stream.json
body '{"model":"unreachable","messages":[{"role":"user","content":"fails then falls back"}]}' failing.json
body '{"model":"nope","messages":[{"role":"user","content":"x"}]}' unknown.json
body '{"model":"mock","messages":[' broken.json
body '{"a":1,"a":2}' dup.json
body '{"session":"projects/p/agent/sessions/endurance","queryResult":{"queryText":"hi","languageCode":"en"}}' webhook.json

H='content-type: application/json'
url=http://127.0.0.1:$port
# shares of the total, per kind (percent)
run_h2load() { # name share extra-args...
    local name=$1 share=$2
    shift 2
    local n=$((total * share / 100))
    [ "$n" -lt 1 ] && return
    h2load -n "$n" -c 8 -t 1 -H "$H" "$@" >"$work/$name.out" 2>&1
}
start_time=$(date +%s)
mixed() { # one pass of the whole mix over $total requests
    run_h2load plain-h1 30 -d "$work/plain.json" --h1 $url/v1/chat/completions &
    run_h2load plain-h2c 20 -d "$work/plain.json" $url/v1/chat/completions &
    run_h2load stream-h2c 15 -d "$work/stream.json" $url/v1/chat/completions &
    run_h2load chat-shape 5 -d "$work/plain.json" --h1 $url/chat &
    run_h2load webhook 8 -d "$work/webhook.json" --h1 $url/webhook &
    run_h2load failing 7 -d "$work/failing.json" --h1 $url/v1/chat/completions &
    run_h2load unknown 4 -d "$work/unknown.json" --h1 $url/v1/chat/completions &
    run_h2load broken 4 -d "$work/broken.json" --h1 $url/v1/chat/completions &
    run_h2load dup 4 -d "$work/dup.json" --h1 $url/v1/chat/completions &
    run_h2load health 2 --h1 $url/health &
    # clients leaving mid-stream (1%): a slow stream, cut after the first event
    python3 - "$port" $((total / 100)) <<'PY' >"$work/disconnect.out" 2>&1 &
import json, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
body = json.dumps({"model": "slowstream", "stream": True,
                   "messages": [{"role": "user", "content": "a b c d e f g h"}]}).encode()
req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
ok = 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(req)
    if s.recv(256):
        ok += 1
    s.close()
print(f"{ok} of {n} clients left mid-stream")
PY
    wait $(jobs -p | grep -v "^$sampler$" | grep -v "^$pid$") 2>/dev/null
}
total_saved=$total
# warm-up: the same mix over WARMUP_PERCENT (default 20) of the requests,
# then record the RSS: allocator arenas and h2o's recycling pools fill up
# during the first seconds of full concurrency and stay flat after that
warm_pct=${WARMUP_PERCENT:-20}
total=$((total_saved * warm_pct / 100))
mixed
sleep 1
rss_start=$(head -1 "$work/rss.log" | cut -d' ' -f2)
rss_warm=$(rss)
total=$((total_saved - total_saved * warm_pct / 100))
mixed
total=$total_saved
sleep 2
rss_end=$(rss)
elapsed=$(( $(date +%s) - start_time ))
alive=no
kill -0 $pid 2>/dev/null && curl -sf $url/health >/dev/null && alive=yes

echo "requests: $total in ${elapsed}s"
for f in "$work"/*.out; do
    name=$(basename "$f" .out)
    line=$(grep -E "^requests:" "$f" | head -1)
    codes=$(grep -E "^status codes:" "$f" | head -1)
    other=$(grep -v "^$" "$f" | tail -1)
    printf '  %-11s %s | %s\n' "$name" "${line:-$other}" "$codes"
done
echo "RSS start: ${rss_start} KiB, after warm-up: ${rss_warm} KiB, end: ${rss_end} KiB"
growth=$(( rss_end - rss_warm ))
echo "growth after warm-up: ${growth} KiB; peak: $(sort -k2 -n "$work/rss.log" | tail -1 | cut -d' ' -f2) KiB"
n_samples=$(wc -l <"$work/rss.log")
half=$(sed -n "$((n_samples / 2))p" "$work/rss.log" | cut -d' ' -f2)
echo "growth over the second half of the run: $(( rss_end - half )) KiB"
echo "RSS samples (KiB, one per second): $(cut -d' ' -f2 "$work/rss.log" | tr '\n' ' ')"
echo "aigw alive and answering: $alive; crashes in log: $(grep -c -i 'sanitizer\|segfault\|abort' "$work/aigw.err")"
[ "$alive" = yes ] && [ "$growth" -lt 1024 ]

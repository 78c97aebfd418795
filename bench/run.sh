#!/usr/bin/env bash
# aigw benchmarks: start-up, /health throughput, proxy overhead against
# nginx and h2o's reverse proxy, and the slow-upstream storm.
#
#   bench/run.sh                 # builds a release aigw in /tmp/aigw-bench-build
#   AIGW=/path/to/aigw bench/run.sh
#
# Knobs (environment): DUR (seconds per h2load cell, default 3), REPS
# (repetitions of each proxy cell, median kept, default 3), STARTS (default
# 20), STORM (concurrent slow chats, default 1000), SLOW_DELAY (seconds the
# slow upstream holds each chat, default 30), QUICK=1 (DUR=1 REPS=1
# STARTS=5 STORM=200 SLOW_DELAY=5: a smoke run of about a minute).
#
# Writes bench/results/latest.md (and raw outputs in bench/results/raw/)
# and prints the same tables. Every process it starts listens on 127.0.0.1
# only and is killed on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
LIB="$BENCH_DIR/lib"
RESULTS="$BENCH_DIR/results"

if [[ "${QUICK:-0}" == 1 ]]; then
    : "${DUR:=1}" "${REPS:=1}" "${STARTS:=5}" "${STORM:=200}" "${SLOW_DELAY:=5}"
fi
DUR=${DUR:-3}
REPS=${REPS:-3}
STARTS=${STARTS:-20}
STORM=${STORM:-1000}
SLOW_DELAY=${SLOW_DELAY:-30}
WARMUP=1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- processes: every one we start is recorded and killed on exit ----------
WORK=$(mktemp -d /tmp/aigw-bench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# A long foreground step, run in the background and waited for: bash runs
# a trap only once the foreground command is over, but interrupts "wait".
run_waited() {
    local p rc=0
    "$@" &
    p=$!
    PIDS+=("$p")
    wait "$p" || rc=$?
    forget_pid "$p"
    return "$rc"
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# ---- dependencies -------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2o >/dev/null || need+=(h2o)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    [[ $(id -u) == 0 ]] || die "missing: ${need[*]} (run as root to install them, or apt-get install -y ${need[*]})"
    log "installing ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx)
H2O=$(command -v h2o)

# ---- aigw ---------------------------------------------------------------------
if [[ -z "${AIGW:-}" ]]; then
    BUILD=${AIGW_BUILD_DIR:-/tmp/aigw-bench-build}
    if [[ ! -f "$BUILD/build.ninja" ]]; then
        log "configuring a release build in $BUILD"
        meson setup "$BUILD" "$SRC_DIR" --buildtype=release >/dev/null
    fi
    # others may be editing the tree: a failed build is retried a few times
    for attempt in 1 2 3 4; do
        if ninja -C "$BUILD" aigw >"$WORK/build.log" 2>&1; then break; fi
        ((attempt < 4)) || { cat "$WORK/build.log" >&2; die "aigw does not build"; }
        log "build failed (attempt $attempt), retrying in 15 s"
        sleep 15
    done
    AIGW="$BUILD/aigw"
fi
[[ -x "$AIGW" ]] || die "no aigw binary at $AIGW"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 4 * STORM + 100)) || die "ulimit -n is $(ulimit -n); the storm needs $((4 * STORM + 100))"

OUT="$WORK/out"
mkdir -p "$OUT/raw"

# ---- ports ----------------------------------------------------------------------
read -r P_AIGW P_AIGW_M P_NGINX P_NGINX_H2 P_H2O P_SLOW P_STORM P_STORM_M P_START < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

wait_http() { # URL [METHOD BODYFILE]: until it answers 200, at most 10 s
    local url=$1 code=none
    for _ in $(seq 100); do
        if [[ $# -gt 1 ]]; then
            code=$(curl -s -o /dev/null -w '%{http_code}' -X "$2" -H 'content-type: application/json' --data-binary @"$3" "$url" || true)
        else
            code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
        fi
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    die "$url does not answer 200 (last: $code)"
}

# ---- metadata ---------------------------------------------------------------------
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host_cpus=$(nproc)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -r)"
    echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    # what else is using the CPUs right now (the second of two top samples)
    top -b -n 2 -d 1 -w 200 >"$WORK/top.txt" || true
    echo "idle_before=$(awk '/^top -/ {n++} n == 2 && /^%Cpu/' "$WORK/top.txt" | sed -n 's/.*[ ,]\([0-9.][0-9.]*\) id,.*/\1/p')%"
    echo "busy_before=$(awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 {printf "%s%s %s%%", sep, $12, $9; sep=", "}' "$WORK/top.txt")"
    echo "aigw=$("$AIGW" --version) ($(cd "$SRC_DIR" && git describe --always --dirty 2>/dev/null || echo unknown))"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "h2o=$("$H2O" --version | head -1 | sed 's/h2o version //')"
    echo "h2load=$(h2load --version | sed 's/h2load //')"
    echo "curl=$(curl --version | head -1 | cut -d' ' -f2)"
    echo "settings=DUR=$DUR REPS=$REPS STARTS=$STARTS STORM=$STORM SLOW_DELAY=$SLOW_DELAY"
} >"$OUT/meta.txt"

# ---- configurations -------------------------------------------------------------
CANNED='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"canned","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the canned upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}'
printf '%s' '{"model":"canned","messages":[{"role":"user","content":"Say hello."}]}' >"$WORK/chat.json"
printf '%s' '{"model":"mock","messages":[{"role":"user","content":"Say hello."}]}' >"$WORK/mock.json"

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    http2_max_requests 10000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$P_NGINX backlog=4096;
        # h2c prior knowledge, for the direct HTTP/2 reference row only
        listen 127.0.0.1:$P_NGINX_H2 http2 backlog=4096;
        location /v1/chat/completions {
            default_type application/json;
            return 200 '$CANNED';
        }
    }
}
EOF

cat >"$WORK/h2o.conf" <<EOF
listen:
  host: 127.0.0.1
  port: $P_H2O
num-threads: 2
$([[ $(id -u) == 0 ]] && echo "user: root")
error-log: $WORK/h2o-error.log
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://127.0.0.1:$P_NGINX/
EOF

aigw_common() { # LEVEL METRICS_PORT
    cat <<EOF
[server]
workers = 2
default_model = mock
metrics_listen = 127.0.0.1:$2
[log]
level = $1
access_log = no
[backend "mock"]
type = mock
mock_latency = 0
[model "mock"]
backend = mock
EOF
}

{
    aigw_common warning "$P_AIGW_M"
    cat <<EOF
[backend "canned"]
type = openai
url = http://127.0.0.1:$P_NGINX
probe_interval = 0
max_connections = 256
max_retries = 0
breaker_threshold = 0
[model "canned"]
backend = canned
EOF
} >"$WORK/aigw.conf"

# the start-up runs log at notice: aigw's own "started in N us" line
sed 's/^level = warning/level = notice/' "$WORK/aigw.conf" >"$WORK/aigw-start.conf"

{
    aigw_common warning "$P_STORM_M"
    cat <<EOF
[backend "slow"]
type = openai
url = http://127.0.0.1:$P_SLOW
probe_interval = 0
max_connections = $((2 * STORM))
connect_timeout = 5s
timeout = 60s
idle_timeout = 60s
max_retries = 0
breaker_threshold = 0
[model "slow"]
backend = slow
EOF
} >"$WORK/aigw-storm.conf"

"$AIGW" --check-config --config "$WORK/aigw.conf" >/dev/null || die "bench config rejected"
"$AIGW" --check-config --config "$WORK/aigw-storm.conf" >/dev/null || die "storm config rejected"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # PID: user+system ticks of the whole process (all threads)
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}
thread_ticks() { # PID: "TID:TICKS ..." per thread
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s:%s ' "${t##*/}" "$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $12 + $13}')"
    done
}

# h2load with a hard time bound; raw output kept. The CPU time PID (the
# server under test) spends during the measured part (after the warm-up)
# gives its CPU cost per request, which the other tenants of the machine
# do not distort the way they distort req/s.
h2l() { # NAME PID ARGS... (the URL last)
    local name=$1 pid=$2 hp c0 c1 t0 t1 th0 th1
    shift 2
    timeout $((DUR + WARMUP + 30)) h2load -D "$DUR" --warm-up-time="$WARMUP" "$@" >"$OUT/raw/$name.txt" 2>&1 &
    hp=$!
    PIDS+=("$hp")
    sleep "$WARMUP"
    c0=$(cpu_ticks "$pid")
    th0=$(thread_ticks "$pid")
    t0=$(date +%s.%N)
    wait "$hp" || true
    forget_pid "$hp"
    c1=$(cpu_ticks "$pid")
    th1=$(thread_ticks "$pid")
    t1=$(date +%s.%N)
    python3 "$LIB/h2load_parse.py" "$OUT/raw/$name.txt" --threads-before "$th0" --threads-after "$th1" \
        --cpu "$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {print (b - a) / hz}')" \
        --wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" >"$OUT/raw/$name.json"
}

# ---- a. foundation ------------------------------------------------------------
log "a. start-up: $STARTS starts, exec -> READY=1"
run_waited python3 "$LIB/startup.py" --aigw "$AIGW" --config "$WORK/aigw-start.conf" --port "$P_START" \
    --runs "$STARTS" --out "$OUT/startup.json" >/dev/null

log "starting nginx (canned upstream), h2o (reference proxy) and aigw"
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/nginx/stdout" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
"$H2O" -c "$WORK/h2o.conf" >"$WORK/h2o.log" 2>&1 &
H2O_PID=$!
PIDS+=("$H2O_PID")
"$AIGW" --config "$WORK/aigw.conf" --listen "127.0.0.1:$P_AIGW" >"$WORK/aigw.log" 2>&1 &
AIGW_PID=$!
PIDS+=("$AIGW_PID")

wait_http "http://127.0.0.1:$P_NGINX/v1/chat/completions" POST "$WORK/chat.json"
wait_http "http://127.0.0.1:$P_AIGW/ready"
wait_http "http://127.0.0.1:$P_AIGW/v1/chat/completions" POST "$WORK/chat.json"
wait_http "http://127.0.0.1:$P_AIGW/v1/chat/completions" POST "$WORK/mock.json"
wait_http "http://127.0.0.1:$P_H2O/v1/chat/completions" POST "$WORK/chat.json"

# /health belongs on the main port (Traefik and healthchecks use it); if
# this build serves it only on the metrics listener, measure it there and
# say so in the report.
HEALTH_PORT=$P_AIGW
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_AIGW/health" || true)
if [[ "$code" != 200 ]]; then
    echo "health_main_port_status=$code" >>"$OUT/meta.txt"
    log "WARNING: GET /health on the main port answers $code; measuring it on the metrics listener"
    HEALTH_PORT=$P_AIGW_M
    wait_http "http://127.0.0.1:$HEALTH_PORT/health"
fi
echo "health_port=$([[ $HEALTH_PORT == "$P_AIGW" ]] && echo main || echo metrics)" >>"$OUT/meta.txt"

log "a. GET /health throughput"
H=http://127.0.0.1:$HEALTH_PORT/health
h2l health-h1-c16 "$AIGW_PID" --h1 -c 16 "$H"
h2l health-h1-c64 "$AIGW_PID" --h1 -c 64 "$H"
h2l health-h2c-c16 "$AIGW_PID" -c 16 -m 10 "$H"
h2l health-h2c-c64 "$AIGW_PID" -c 64 -m 10 "$H"

# ---- b. proxy overhead ------------------------------------------------------------
# Concurrency N = N requests in flight: HTTP/1.1 uses N connections; h2c
# uses 1x1, 2x8 and 8x8 (connections x streams).
h2c_args() { case $1 in 1) echo "-c 1 -m 1" ;; 16) echo "-c 2 -m 8" ;; 64) echo "-c 8 -m 8" ;; esac; }
CT=(-d "$WORK/chat.json" -H 'content-type: application/json')
for rep in $(seq "$REPS"); do
    for c in 1 16 64; do
        log "b. proxy: rep $rep/$REPS, concurrency $c"
        # shellcheck disable=SC2046 # h2c_args is meant to split
        for t in "direct $NGINX_PID $P_NGINX $P_NGINX_H2" "aigw $AIGW_PID $P_AIGW $P_AIGW" \
            "h2o $H2O_PID $P_H2O $P_H2O"; do
            read -r name pid p1 p2 <<<"$t"
            h2l "proxy-$name-h1-c$c-r$rep" "$pid" --h1 -c "$c" "${CT[@]}" "http://127.0.0.1:$p1/v1/chat/completions"
            h2l "proxy-$name-h2c-c$c-r$rep" "$pid" $(h2c_args "$c") "${CT[@]}" \
                "http://127.0.0.1:$p2/v1/chat/completions"
        done
        # the same request answered by the built-in mock model: aigw's cost
        # without the upstream call (curl, the second JSON parse)
        h2l "proxy-mock-h1-c$c-r$rep" "$AIGW_PID" --h1 -c "$c" -d "$WORK/mock.json" \
            -H 'content-type: application/json' "http://127.0.0.1:$P_AIGW/v1/chat/completions"
    done
done
grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$AIGW_PID/status" | tr -s ' \t' ' ' >"$OUT/aigw-after-load.txt" || true
ss -tn state established "( dport = :$P_NGINX )" 2>/dev/null | grep -c ESTAB >"$OUT/aigw-upstream-conns.txt" || true

log "stopping nginx, h2o and the bench aigw"
for pid in "${PIDS[@]}"; do stop_pid "$pid"; done

# ---- c. the storm -----------------------------------------------------------------
log "c. storm: $STORM chats to an upstream that takes ${SLOW_DELAY}s, /health polled every 10 ms"
python3 -u "$LIB/slow_upstream.py" --port "$P_SLOW" --delay "$SLOW_DELAY" --stats "$OUT/slow-stats.json" \
    >"$WORK/slow.log" 2>&1 &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
"$AIGW" --config "$WORK/aigw-storm.conf" --listen "127.0.0.1:$P_STORM" >"$WORK/aigw-storm.log" 2>&1 &
STORM_AIGW=$!
PIDS+=("$STORM_AIGW")
for _ in $(seq 100); do grep -q READY "$WORK/slow.log" && break; sleep 0.1; done
wait_http "http://127.0.0.1:$P_STORM/ready"
SH_PORT=$P_STORM
[[ "$HEALTH_PORT" == "$P_AIGW" ]] || SH_PORT=$P_STORM_M
# probe for the storm's length plus a few seconds, so the moment all the
# slow answers come back is covered too (at most ~70 s)
PROBE_S=$(python3 -c "print(min(70, $SLOW_DELAY * 1.2 + 3))")
run_waited timeout $((SLOW_DELAY * 3 + 120)) python3 "$LIB/storm.py" --port "$P_STORM" --health-port "$SH_PORT" \
    --storm "$STORM" --duration "$PROBE_S" --storm-timeout $((SLOW_DELAY * 2 + 60)) --aigw-pid "$STORM_AIGW" \
    --out "$OUT/storm.json" >/dev/null
stop_pid "$SLOW_PID"
stop_pid "$STORM_AIGW"
grep -v -e 'no API keys are configured' -e '/webhook has no authentication' "$WORK/aigw-storm.log" \
    >"$OUT/aigw-storm.log" || true
cp "$WORK/aigw.log" "$OUT/aigw.log"

# ---- report -------------------------------------------------------------------------
mkdir -p "$RESULTS"
rm -rf "$RESULTS/raw"
cp -r "$OUT/raw" "$RESULTS/raw"
cp "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log "$RESULTS/raw/" 2>/dev/null || true
python3 "$LIB/report.py" "$OUT" >"$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "written $RESULTS/latest.md"

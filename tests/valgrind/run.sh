#!/usr/bin/env bash
# aigw under valgrind memcheck for a few thousand mixed requests, then
# SIGTERM: no invalid access, no definitely/indirectly lost block of aigw's.
#   tests/valgrind/run.sh AIGW_BINARY [REQUESTS]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
aigw=${1:?usage: run.sh AIGW_BINARY [REQUESTS]}
n=${2:-3000}
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 77; }
out=$(mktemp -d /tmp/aigw-valgrind.XXXXXX)
trap 'kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
port=$((20000 + RANDOM % 20000))
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --suppressions="$here/h2o.supp" --log-file="$out/vg.log" \
    "$aigw" --config "$here/aigw-load.conf" --listen 127.0.0.1:$port 2>"$out/aigw.err" &
pid=$!
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done
timeout 600 python3 "$here/mixed_load.py" --port $port --requests "$n" --threads 4
load=$?
kill -TERM "$pid"
wait "$pid"
rc=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost" "$out/vg.log"
if [ $rc -ne 0 ] || [ $load -ne 0 ]; then
    echo "valgrind exit $rc, load exit $load"
    sed -n '1,200p' "$out/vg.log" | grep -v "^==[0-9]*== *$" | tail -80
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"

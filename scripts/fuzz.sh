#!/usr/bin/env bash
# Fuzz every harness with clang's libFuzzer for a bounded time each.
#   scripts/fuzz.sh [SECONDS] [HARNESS...]
# New interesting inputs stay in a scratch copy; crashes are saved to
# fuzz/crash-* and make the script fail. Prints executions per harness.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    harnesses=($(ls fuzz/fuzz-*.c | sed 's|fuzz/fuzz-||; s|\.c$||'))
fi
out=$(mktemp -d /tmp/aigw-fuzz.XXXXXX)
trap 'rm -rf "$out"' EXIT
core=(src/config.c src/log.c src/request-id.c src/chat-model.c src/backend-gemini.c src/backend-mock.c
      src/backend-state.c src/sse.c src/json-check.c src/keys.c src/ratelimit.c src/netaddr.c src/metrics.c
      src/dialogflow.c src/session-store.c src/secret.c src/utf8.c src/json-writer.c src/listen.c src/siphash.c)
clang -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -Iinclude -I/usr/include/cjson \
    -c "${core[@]}" 2>&1 | grep -v warning || true
mkdir -p "$out/obj" && mv ./*.o "$out/obj/" 2>/dev/null
failed=0
for h in "${harnesses[@]}"; do
    bin="$out/fuzz-$h"
    if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -Iinclude -I/usr/include/cjson \
        "fuzz/fuzz-$h.c" "$out"/obj/*.o -lcjson -linih -lsystemd -lcrypto -lpthread -lm -o "$bin"; then
        echo "fuzz $h: build failed"; failed=1; continue
    fi
    mkdir -p "$out/corpus-$h"
    cp -r "fuzz/corpus/$h/." "$out/corpus-$h/" 2>/dev/null || true
    log="$out/$h.log"
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix=fuzz/crash-"$h"- "$out/corpus-$h" >"$log" 2>&1; then
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        [ -z "$execs" ] && execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
        echo "fuzz $h: ${secs}s, ${execs:-?} executions, no crash"
    else
        echo "fuzz $h: FAILED (see below)"; tail -30 "$log"; failed=1
    fi
done
exit $failed

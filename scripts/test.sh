#!/usr/bin/env bash
# The README's second command: the whole test suite.
#   - builds with -Werror and runs the unit, fuzz-corpus and integration tests
#   - the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   - fuzzes every harness for FUZZ_SECONDS (default 60 under CI, 10 otherwise)
#   - checks the Prometheus alert rules (promtool) against a real scrape
#   - runs the real-systemd tests in a systemd-nspawn container (as root)
#   - builds the RPM and checks it
# Ends with one line "checks: N passed, N failed"; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/deps.sh --test

passed=0 failed=0 skipped=0
failures=()
step() {
    local name=$1
    shift
    echo
    echo "=== $name"
    local start=$SECONDS
    "$@"
    local rc=$?
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "=== $name: ok ($((SECONDS - start)) s)"
    elif [ $rc -eq 77 ]; then
        skipped=$((skipped + 1))
        echo "=== $name: skipped"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED ($((SECONDS - start)) s)"
    fi
}

build() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Dwerror=true "$@" >/dev/null || return 1
    fi
    ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

suite() {
    local dir=$1
    shift
    meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
}

step "build (-Werror)" build build-test
step "unit and fuzz-corpus tests" suite build-test --suite unit
step "integration tests" suite build-test --suite integration
step "build (ASan+UBSan)" build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
step "unit tests under ASan+UBSan" suite build-asan --suite unit
step "integration tests under ASan+UBSan" suite build-asan --suite integration
unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

step "valgrind: 3000 mixed requests, no leak" tests/valgrind/run.sh build-test/aigw 3000

if [ -n "${CI:-}" ]; then fuzz_secs=${FUZZ_SECONDS:-60}; else fuzz_secs=${FUZZ_SECONDS:-10}; fi
step "fuzzing (${fuzz_secs}s per harness)" scripts/fuzz.sh "$fuzz_secs"

alerts() {
    local sample
    sample=$(mktemp /tmp/aigw-metrics.XXXXXX)
    build-test/aigw --config aigw.conf --listen 127.0.0.1:15999 2>/dev/null &
    local pid=$!
    for _ in $(seq 50); do curl -sf http://127.0.0.1:15999/health >/dev/null && break; sleep 0.1; done
    curl -sf http://127.0.0.1:15999/v1/chat/completions -H 'Content-Type: application/json' \
        -d '{"model":"mock","messages":[{"role":"user","content":"hi"}]}' >/dev/null
    curl -sf http://127.0.0.1:15999/metrics >"$sample"
    kill "$pid"; wait "$pid" 2>/dev/null
    scripts/check-alerts.sh "$sample"
    local rc=$?
    rm -f "$sample"
    return $rc
}
step "alert rules and a real scrape (promtool)" alerts

systemd_tests() {
    if [ "$(id -u)" -ne 0 ] || ! command -v systemd-nspawn >/dev/null; then
        echo "needs root and systemd-nspawn"
        return 77
    fi
    tests/systemd/run.sh
}
[ -x tests/systemd/run.sh ] && step "real systemd (nspawn)" systemd_tests
[ -x scripts/rpm-check.sh ] && step "RPM build and checks" scripts/rpm-check.sh

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

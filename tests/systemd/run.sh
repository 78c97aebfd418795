#!/bin/bash
# SPDX-License-Identifier: MIT
# System test of aigw under a real systemd (252, in systemd-nspawn over the
# host's /usr), with the units exactly as installed:
#
#   tests/systemd/run.sh [BUILD_DIR]
#
# Builds the aigw target in BUILD_DIR (set up with meson if it has no
# build.ninja; a temporary one when not given), installs it into a temporary
# stage, boots a volatile container with the stage overlaid on /usr and
# tests/systemd/conf/aigw.conf at /etc/aigw, and runs probe.sh as the boot
# unit (the checks are listed at the top of probe.sh). Needs root, meson,
# ninja and systemd-nspawn (package systemd-container); the container boots
# the host's own systemd over a volatile root and uses its /usr/bin/python3
# and curl. BOOT_TIMEOUT (s, default 150) bounds the container.
#
# Prints one PASS/FAIL line per check and, last, "N passed, N failed".
# Exit status: 0 all passed, 1 a check failed or the run broke, 77 skipped
# (not root, no systemd-nspawn). KEEP=1 keeps the work folder.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-150}
T_START=$(date +%s.%N)

say() { echo "run.sh: $*" >&2; }
finish() { # finish PASSED FAILED [EXIT]
    echo "$1 passed, $2 failed"
    exit "${3:-$([ "$2" = 0 ] && [ "$1" -gt 0 ] && echo 0 || echo 1)}"
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

if [ "$(id -u)" != 0 ]; then
    say "skipped: needs root (systemd-nspawn)"
    finish 0 0 77
fi
if ! command -v systemd-nspawn >/dev/null; then
    say "skipped: systemd-nspawn not found (apt-get install systemd-container)"
    finish 0 0 77
fi

WORK=$(mktemp -d /tmp/aigw-systemd-test.XXXXXX)
chmod 755 "$WORK"
cleanup() {
    if [ "${KEEP:-0}" = 1 ] || [ "${FAILED_RUN:-1}" = 1 ]; then
        say "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# ---- build and stage --------------------------------------------------------------
# AIGW_STAGE=DIR: test a tree that is already installed (usr/bin/aigw and
# the units under usr/lib/systemd/system), e.g. an unpacked RPM payload.
if [ -n "${AIGW_STAGE:-}" ]; then
    STAGE=$AIGW_STAGE
    UNITDIR=$STAGE/usr/lib/systemd/system
    if [ ! -x "$STAGE/usr/bin/aigw" ] || [ ! -f "$UNITDIR/aigw.service" ] || [ ! -f "$UNITDIR/aigw.socket" ]; then
        say "AIGW_STAGE=$STAGE lacks usr/bin/aigw or the units"
        finish 0 1
    fi
    how="prepared tree $STAGE"
else
    BUILD=${1:-}
    if [ -z "$BUILD" ]; then
        BUILD=$WORK/build
    fi
    if [ ! -f "$BUILD/build.ninja" ]; then
        say "meson setup $BUILD"
        if ! meson setup "$BUILD" "$SRC" --prefix=/usr -Dsystemdunitdir=/usr/lib/systemd/system \
            >"$WORK/setup.log" 2>&1; then
            tail -n 30 "$WORK/setup.log" >&2
            say "meson setup failed"
            finish 0 1
        fi
    fi
    # Only the daemon: the rest of the tree (unit tests, fuzzers) may be mid-edit.
    if ! ninja -C "$BUILD" aigw >"$WORK/build.log" 2>&1; then
        tail -n 30 "$WORK/build.log" >&2
        say "building aigw failed"
        finish 0 1
    fi

    STAGE=$WORK/stage
    UNITDIR=$STAGE/usr/lib/systemd/system
    # meson install gives the real install set; whatever prefix the build dir was
    # set up with, the units name /usr/bin/aigw, so normalise onto /usr.
    if meson install -C "$BUILD" --no-rebuild --quiet --destdir "$WORK/inst" >"$WORK/install.log" 2>&1; then
        bin=$(find "$WORK/inst" -path '*/bin/aigw' -type f | head -n1)
        svc=$(find "$WORK/inst" -name aigw.service -type f | head -n1)
        sock=$(find "$WORK/inst" -name aigw.socket -type f | head -n1)
        how="meson install"
    else
        tail -n 10 "$WORK/install.log" >&2
        say "meson install failed; copying the built binary and units/ by hand"
        bin=$BUILD/aigw svc=$SRC/units/aigw.service sock=$SRC/units/aigw.socket
        how="copied by hand"
    fi
    if [ ! -x "$bin" ] || [ ! -f "$svc" ] || [ ! -f "$sock" ]; then
        say "install set incomplete: bin='$bin' service='$svc' socket='$sock'"
        finish 0 1
    fi
    install -D -m 755 "$bin" "$STAGE/usr/bin/aigw"
    install -D -m 644 "$svc" "$UNITDIR/aigw.service"
    install -D -m 644 "$sock" "$UNITDIR/aigw.socket"
    chmod -R a+rX "$STAGE"
fi
say "staged ($how): $("$STAGE/usr/bin/aigw" --version)"

# The config folder is writable from inside (the probe swaps configs for the
# reload checks) and world-readable: the service runs as a DynamicUser in its
# own user namespace, where the files' owner maps to nobody.
CONF=$WORK/etc-aigw
OUT=$WORK/out
mkdir -p "$CONF" "$OUT"
cp "$HERE/conf/aigw.conf" "$CONF/aigw.conf"
chmod 755 "$CONF"
chmod 644 "$CONF/aigw.conf"

# ---- boot ---------------------------------------------------------------------------
T_BOOT=$(date +%s.%N)
timeout --kill-after=10 "$BOOT_TIMEOUT" \
    systemd-nspawn -D / --volatile=yes --register=no --keep-unit -q --private-network \
    --overlay-ro="/usr:$STAGE/usr:/usr" \
    --bind-ro="$HERE:/aigw-test" \
    --bind-ro="$HERE/probe.service:/etc/systemd/system/aigw-probe.service" \
    --bind="$CONF:/etc/aigw" \
    --bind="$OUT:/out" \
    -b -- systemd.firstboot=off systemd.unit=aigw-probe.service \
    >"$WORK/console.log" 2>&1
NSPAWN_RC=$?
T_END_BOOT=$(date +%s.%N)

# ---- results ------------------------------------------------------------------------
passed=0 failed=0
if [ -f "$OUT/results" ]; then
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            PASS*) passed=$((passed + 1)) ;;
            FAIL*) failed=$((failed + 1)) ;;
        esac
    done <"$OUT/results"
fi
if [ ! -f "$OUT/done" ]; then
    echo "FAIL probe-finished: the probe did not finish (nspawn exit $NSPAWN_RC; 124 = timeout after ${BOOT_TIMEOUT}s)"
    failed=$((failed + 1))
    echo "--- console (last 20 lines):"
    tail -n 20 "$WORK/console.log"
    echo "--- probe.log (last 30 lines):"
    tail -n 30 "$OUT/probe.log" 2>/dev/null
elif [ "$NSPAWN_RC" != 0 ]; then
    echo "FAIL container-exit: systemd-nspawn exited $NSPAWN_RC after the probe finished"
    failed=$((failed + 1))
fi
if [ "$failed" != 0 ]; then
    say "details: $OUT/probe.log, $OUT/journal.txt, $WORK/console.log"
fi

T_END=$(date +%s.%N)
if [ -f "$OUT/t_probe_start" ]; then
    say "boot -> probe: $(elapsed "$T_BOOT" "$(cat "$OUT/t_probe_start")") s"
fi
say "container: $(elapsed "$T_BOOT" "$T_END_BOOT") s; whole run (build, stage, boot, checks): $(elapsed "$T_START" "$T_END") s"
[ "$failed" = 0 ] && FAILED_RUN=0
finish "$passed" "$failed"

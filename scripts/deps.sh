#!/usr/bin/env bash
# Installs what aigw needs to build, run and test, with apt (Debian 12,
# Ubuntu) or dnf (Fedora). Idempotent: installs only what is missing.
#   scripts/deps.sh          build and run
#   scripts/deps.sh --test   also everything the test suite uses
set -euo pipefail

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)

if command -v apt-get >/dev/null 2>&1; then
    pkgs=(meson ninja-build pkg-config gcc libh2o-evloop-dev libssl-dev libcurl4-openssl-dev
          libcjson-dev libsystemd-dev libinih-dev libcmocka-dev curl ca-certificates)
    if [ "$want_test" = 1 ]; then
        pkgs+=(python3 nghttp2-client systemd systemd-container openssl valgrind clang
               libclang-rt-14-dev prometheus rpm rpmlint cpio elfutils nginx-light h2o haproxy
               iproute2 procps groff-base zlib1g-dev)
    fi
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "Installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo_cmd[@]}" apt-get update -qq
        # prometheus and nginx would start as services on a systemd host:
        # the tests start their own copies
        "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
elif command -v dnf >/dev/null 2>&1; then
    pkgs=(meson ninja-build pkgconf-pkg-config gcc openssl-devel libcurl-devel cjson-devel
          systemd-devel inih-devel libcmocka-devel zlib-devel curl)
    missing=()
    for p in "${pkgs[@]}"; do rpm -q "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ "${#missing[@]}" -gt 0 ] && "${sudo_cmd[@]}" dnf install -y -q "${missing[@]}"
    if [ "$want_test" = 1 ]; then
        # test tools one by one: names differ between Fedora releases, and a
        # missing one only skips the tests that need it
        for p in python3 nghttp2 systemd-container openssl valgrind clang compiler-rt promtool \
                 golang-github-prometheus rpm-build rpmlint cpio elfutils nginx haproxy nodejs npm \
                 iproute procps-ng groff; do
            rpm -q "$p" >/dev/null 2>&1 || "${sudo_cmd[@]}" dnf install -y -q "$p" >/dev/null 2>&1 ||
                echo "deps: $p is not available here; tests that need it are skipped"
        done
    fi
else
    echo "Neither apt-get nor dnf found: install the packages listed in README.md by hand." >&2
    exit 1
fi

#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Check the Prometheus alerting rules and run their unit tests; with an
# argument, also lint a metrics exposition file (e.g. one written by
# `AIGW_METRICS_SAMPLE=FILE tests/test-metrics`).
#
# Usage: scripts/check-alerts.sh [METRICS_FILE]
# Exit: 0 all passed, 1 a check failed, 2 usage, 77 promtool missing
# (the "skipped" code of meson and automake).

set -u

usage() {
    echo "usage: $0 [METRICS_FILE]" >&2
    exit 2
}

[ $# -le 1 ] || usage
case "${1-}" in
-h | --help) usage ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd) || exit 1
rules="$root/packaging/prometheus/aigw-alerts.yml"
tests="$root/packaging/prometheus/aigw-alerts.test.yml"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-alerts: promtool not found (Debian package: prometheus)" >&2
    exit 77
fi

status=0

promtool check rules "$rules" || status=1
promtool test rules "$tests" || status=1

if [ $# -eq 1 ]; then
    if [ ! -r "$1" ]; then
        echo "check-alerts: cannot read $1" >&2
        exit 1
    fi
    # An empty file passes promtool; it is never a valid aigw scrape.
    if [ ! -s "$1" ]; then
        echo "check-alerts: $1 is empty" >&2
        exit 1
    fi
    echo "Checking metrics $1"
    # Lint problems (missing HELP, counters without _total...) fail too.
    if promtool check metrics <"$1"; then
        echo "  SUCCESS"
    else
        status=1
    fi
fi

if [ $status -ne 0 ]; then
    echo "check-alerts: FAILED" >&2
fi
exit $status

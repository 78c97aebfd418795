#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run aigw
# on 127.0.0.1:5002 with the repository's aigw.conf (the mock model answers
# out of the box). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [ ! -d build ]; then
    meson setup build --buildtype=release
fi
ninja -C build aigw
echo
echo "aigw is starting on http://127.0.0.1:5002. Try, in another terminal:"
echo "  curl -s http://127.0.0.1:5002/chat -H 'Content-Type: application/json' \\"
echo "       -d '{\"model\":\"mock\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"
echo
exec build/aigw --config aigw.conf --listen 127.0.0.1:5002

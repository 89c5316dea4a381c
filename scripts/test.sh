#!/usr/bin/env bash
# Install everything the test suite needs and run it (the README's test command;
# .ci/run runs exactly this). Debian's Chromium drives the browser tests
# (Playwright never downloads a browser); without root or sudo those tests skip.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo -n); fi
    if "${as_root[@]}" true 2>/dev/null; then
        "${as_root[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium >/dev/null \
            || echo "warning: could not install chromium; the browser tests will be skipped"
    else
        echo "warning: chromium is missing and apt needs root; the browser tests will be skipped"
    fi
fi
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests (exit 5); treating as success"
    exit 0
fi
exit "$rc"

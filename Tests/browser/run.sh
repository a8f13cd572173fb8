#!/usr/bin/env bash
# The browser suite: MicroSSE's demo and hub pages in a real headless Chromium.
# Installs what it needs (Debian's chromium, fonts, curl; the tests use only Python's standard
# library and talk to Chromium over --remote-debugging-pipe), expects .build/debug/microsse
# (builds it only when missing), runs Tests/browser/suite.py, and ends with the line
# `browser: N passed, M failed`. Exits non-zero on any failure, including a Chromium that
# cannot start: these tests never skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/deps.sh chromium fonts-dejavu-core curl python3 >&2

if [ -z "${MICROSSE_BIN:-}" ] && [ ! -x .build/debug/microsse ]; then
    echo "browser: .build/debug/microsse is missing, running swift build" >&2
    swift build
fi

# python3 from PATH when it works, Debian's otherwise (the suite needs only the standard library).
PYTHON=python3
command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || PYTHON=/usr/bin/python3

suite_pid=""
cleanup() {
    # The suite kills its own servers and Chromium; this catches an interrupted run.
    if [ -n "$suite_pid" ] && kill -0 "$suite_pid" 2>/dev/null; then
        kill -TERM "$suite_pid" 2>/dev/null || true
        wait "$suite_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PYTHON" -u Tests/browser/suite.py &
suite_pid=$!
status=0
wait "$suite_pid" || status=$?
suite_pid=""
exit "$status"

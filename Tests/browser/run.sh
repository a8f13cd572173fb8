#!/usr/bin/env bash
# The browser suite: MicroSSE's demo and hub pages, and microsse.js, in a real headless Chromium.
# Installs what it needs, skipping what is there: Debian's chromium and chromium-driver, fonts,
# curl, and Selenium (PyPI) for the Python that runs the suite. Expects .build/debug/microsse
# (builds it only when missing), runs Tests/browser/suite.py, and ends with the line
# `browser: N passed, M failed`. Exits non-zero on any failure, including a Chromium or
# chromedriver that cannot start: these tests never skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/deps.sh chromium chromium-driver fonts-dejavu-core curl python3 >&2

if [ -z "${MICROSSE_BIN:-}" ] && [ ! -x .build/debug/microsse ]; then
    echo "browser: .build/debug/microsse is missing, running swift build" >&2
    swift build
fi

# python3 from PATH when it works, Debian's otherwise.
PYTHON=python3
command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || PYTHON=/usr/bin/python3

# Selenium 4 (4.11 or later) from PyPI for that Python, unless it imports already (pip from
# Debian's python3-pip when that Python has none). Debian's own Python is marked externally
# managed (PEP 668): pip installs into it only when told so.
SELENIUM_CHECK='import sys, selenium; sys.exit(not (4, 11) <= tuple(int(x) for x in selenium.__version__.split(".")[:2]) < (5, 0))'
if ! "$PYTHON" -c "$SELENIUM_CHECK" >/dev/null 2>&1; then
    "$PYTHON" -m pip --version >/dev/null 2>&1 || scripts/deps.sh python3-pip >&2
    pip_flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
    "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' &&
        pip_flags+=(--break-system-packages)
    echo "browser: installing selenium for $PYTHON" >&2
    "$PYTHON" -m pip install "${pip_flags[@]}" 'selenium>=4.11,<5' >&2
fi

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

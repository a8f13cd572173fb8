#!/usr/bin/env bash
# Soak: runs `microsse serve` under publishers, verifying subscribers, churn (join/leave, resets,
# resumes, garbage) and slow readers for SOAK_SECONDS (default 600), sampling RSS, fds and
# threads every SOAK_SAMPLE seconds (default 5). Fails if any grows without bound or any
# acknowledged event is missing. Writes the figures into docs/RELIABILITY.md.
#   scripts/soak.sh                 SOAK_SECONDS=3600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh libmicrohttpd-dev pkg-config python3 >/dev/null
CONFIG=${SOAK_CONFIG:-release}
# The tree may be edited while this builds (shared working tree): retry a few times.
for attempt in 1 2 3; do
    swift build -c "$CONFIG" --product microsse >&2 && break
    [ "$attempt" = 3 ] && exit 1
    sleep 30
done
rc=0
python3 scripts/soak.py --binary ".build/$CONFIG/microsse" --seconds "${SOAK_SECONDS:-600}" \
    --sample "${SOAK_SAMPLE:-5}" --out .build/reliability || rc=$?
scripts/reliability-report.sh soak || true
exit "$rc"

#!/usr/bin/env bash
# Runs the whole test suite under AddressSanitizer (with LeakSanitizer) and under
# ThreadSanitizer, each in its own scratch directory so the normal build is untouched, and
# writes the results into docs/RELIABILITY.md.
#
#   scripts/sanitizers.sh            both
#   scripts/sanitizers.sh address    only ASan
#   scripts/sanitizers.sh thread     only TSan
#   SANITIZER_FILTER=ReliabilityTests scripts/sanitizers.sh   a subset (passed to --filter)
#   SANITIZER_SKIP=authorizerAndRoutes scripts/sanitizers.sh  leave tests out (passed to --skip)
#
# Swift's toolchain ships the ASan and TSan runtimes (usr/lib/swift/clang/lib/linux), so no
# Debian package is needed for them. Suppressions: scripts/tsan.supp, the known false
# report inside Synchronization.Mutex on Linux, and scripts/lsan.supp, XCTest's own leaks
# (see those files). Exit status: 0 when every run
# passed with no sanitizer report.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh libmicrohttpd-dev pkg-config curl openssl gcc g++ >/dev/null
KINDS=${*:-address thread}
OUT=.build/reliability
mkdir -p "$OUT"
FILTER=()
[ -n "${SANITIZER_FILTER:-}" ] && FILTER=(--filter "$SANITIZER_FILTER")
# SANITIZER_SKIP=REGEX leaves tests out (passed to --skip); the report names what was skipped.
[ -n "${SANITIZER_SKIP:-}" ] && FILTER+=(--skip "$SANITIZER_SKIP")
status=0
report=$OUT/sanitizers.md.new
: >"$report"

for kind in $KINDS; do
    case "$kind" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "unknown sanitizer $kind" >&2; exit 2 ;;
    esac
    log=$OUT/sanitizer-$kind.log
    # Reports from every process (the test runners and each `microsse` child the tests start)
    # go to files under $reports, so a child's report is not lost in a pipe.
    reports_dir=$OUT/sanitizer-$kind-reports
    rm -rf "$reports_dir"
    mkdir -p "$reports_dir"
    echo "== swift test --sanitize=$kind (log: $log, reports: $reports_dir)" >&2
    start=$(date +%s)
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$PWD/$reports_dir/asan" \
        TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp:halt_on_error=0:second_deadlock_stack=1:report_signal_unsafe=0:log_path=$PWD/$reports_dir/tsan" \
        LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
        SWIFT_BACKTRACE=enable=no \
        swift test --sanitize="$kind" --scratch-path "$scratch" "${FILTER[@]}" >"$log" 2>&1
    rc=$?
    # The working tree is shared: a file edited mid-build fails the build, not the tests. Retry.
    for attempt in 1 2 3; do
        grep -q 'was modified during the build\|error: emit-module command failed\|Compiling.*error:' "$log" || break
        echo "   build raced an edit; retrying ($attempt)" >&2
        sleep 20
        rm -rf "$reports_dir" && mkdir -p "$reports_dir"
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$PWD/$reports_dir/asan" \
            TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp:halt_on_error=0:second_deadlock_stack=1:report_signal_unsafe=0:log_path=$PWD/$reports_dir/tsan" \
            LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
            SWIFT_BACKTRACE=enable=no \
            swift test --sanitize="$kind" --scratch-path "$scratch" "${FILTER[@]}" >"$log" 2>&1
        rc=$?
    done
    secs=$(($(date +%s) - start))
    cat "$reports_dir"/* >"$OUT/sanitizer-$kind-reports.txt" 2>/dev/null || true
    reports=$(grep -cE '(ERROR|WARNING): (AddressSanitizer|LeakSanitizer|ThreadSanitizer)' \
        "$log" "$OUT/sanitizer-$kind-reports.txt" | awk -F: '{n += $NF} END {print n + 0}')
    suppressed=$(grep -ohE 'ThreadSanitizer: Matched [0-9]+ suppressions' "$OUT/sanitizer-$kind-reports.txt" | head -1 || true)
    swifttesting=$(grep -aE '(✔|✘) Test run with' "$log" | tail -1 | sed 's/^[^A-Za-z]*//' || true)
    xctest=$(grep -aE 'Executed [0-9]+ tests?' "$log" | tail -1 | sed 's/^[[:space:]]*//' || true)
    failed_tests=$(grep -aE '✘ Test "[^"]*" failed' "$log" | sed -E 's/.*✘ Test "([^"]*)".*/\1/' || true)
    verdict=clean
    if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
        verdict="FAILED (exit $rc, $reports sanitizer reports)"
        status=1
    fi
    {
        echo "### $kind${SANITIZER_SKIP:+, skipping $SANITIZER_SKIP}${SANITIZER_FILTER:+, only $SANITIZER_FILTER}"
        echo
        echo "- run: $(date -u +%Y-%m-%dT%H:%M:%SZ), \`swift test --sanitize=$kind --scratch-path $scratch${SANITIZER_FILTER:+ --filter $SANITIZER_FILTER}${SANITIZER_SKIP:+ --skip $SANITIZER_SKIP}\`, ${secs} s including the build"
        echo "- result: **$verdict**"
        [ -n "$swifttesting" ] && echo "- swift-testing: $swifttesting"
        [ -n "$xctest" ] && echo "- XCTest: $xctest"
        [ "$kind" = thread ] && echo "- suppressions: scripts/tsan.supp${suppressed:+ ($suppressed)}"
        if [ -n "$failed_tests" ]; then
            echo "- tests that failed under $kind:"
            echo "$failed_tests" | sed 's/^/  - /'
        fi
        if [ "$reports" -ne 0 ]; then
            echo "- first reports (all in \`$OUT/sanitizer-$kind-reports.txt\`):"
            echo
            echo '```'
            cat "$log" "$OUT/sanitizer-$kind-reports.txt" |
                grep -E -A10 '(ERROR|WARNING): (AddressSanitizer|LeakSanitizer|ThreadSanitizer)' |
                sed -E 's/ \(BuildId: [0-9a-f]+\)//; s/\(\/opt\/swift[^)]*\)//' | cut -c1-180 | head -40
            echo '```'
        fi
        echo
    } >>"$report"
    echo "$kind: $verdict" >&2
done

# Keep the other sanitizer's last section when only one ran.
python3 - "$report" "$OUT/sanitizers.md" <<'PY'
import sys, re, os
new = open(sys.argv[1]).read()
old = open(sys.argv[2]).read() if os.path.exists(sys.argv[2]) else ""
def sections(t):
    return {m.split("\n", 1)[0]: m for m in re.findall(r"### [^\n]+\n.*?(?=\n### |\Z)", t, re.S)}
s = sections(old)
s.update(sections(new))
open(sys.argv[2], "w").write("\n".join(s[k].strip() + "\n" for k in sorted(s)))
PY
rm -f "$report"
scripts/reliability-report.sh sanitizers || true
exit "$status"

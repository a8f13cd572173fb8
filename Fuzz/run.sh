#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer + AddressSanitizer and runs each for a bounded time.
#
#   Fuzz/run.sh                 every target, FUZZ_SECONDS (default 60) each, one after another
#   Fuzz/run.sh parser channel  only these targets
#   FUZZ_SECONDS=600 FUZZ_JOBS=2 Fuzz/run.sh   longer, two targets at a time
#   FUZZ_BUILD_ONLY=1 Fuzz/run.sh              build only
#
# Swift targets are compiled with `swiftc -sanitize=fuzzer,address` together with the project
# source files they exercise (so internal functions are reachable); the C targets
# (Fuzz/c/NAME.c: cabi, headers) are built with the toolchain's clang `-fsanitize=fuzzer,address` against .build/debug/libMicroSSEC.so.
# The toolchain ships its own libFuzzer and ASan runtimes: no Debian package is needed for them.
#
# Seeds live in Fuzz/corpus/NAME (committed); the growing corpus in .build/fuzz/corpus/NAME.
# A crash is saved to Fuzz/crashes/NAME/ and makes the script exit non-zero. Every run is
# appended to Fuzz/ledger.tsv, and the fuzz section of docs/RELIABILITY.md is rewritten from it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
OUT=$ROOT/.build/fuzz
mkdir -p "$OUT/bin" "$OUT/corpus" "$OUT/logs"
scripts/deps.sh libmicrohttpd-dev libjwt-dev pkg-config python3 >&2

# The layers' sources are compiled into one module per target (hence -package-name: their
# `package` declarations are then visible to the target, like `internal` ones).
WIRE=$(ls Sources/MicroSSEWire/*.swift | tr '\n' ' ')
CORE=$(ls Sources/MicroSSECore/*.swift | tr '\n' ' ')

# name -> project sources compiled into the target (besides Fuzz/targets/Common.swift + NAME.swift)
declare -A SOURCES=(
    [roundtrip]="$WIRE"
    [parser]="$WIRE"
    [publishbody]="$WIRE"
    [channel]="$WIRE $CORE"
    [resume]="$WIRE $CORE Sources/MicroSSETransport/Request.swift"
    [jwt]="$WIRE $(echo Sources/MicroSSEAuth/*.swift)"
)
# name -> extra compiler flags (the system libraries a target's sources import)
declare -A FLAGS=(
    [jwt]="-I Sources/CJWT -ljwt"
)
ALL_SWIFT="roundtrip parser publishbody channel resume jwt"
ALL_C="cabi headers"
ALL="$ALL_SWIFT $ALL_C"
TARGETS=${*:-$ALL}

build_swift() {
    local name=$1 src="$OUT/src/$name"
    # One module of the layers' files: their imports of each other are dropped. Each copy is
    # named after its module too (MicroSSEWire and MicroSSEAuth both have a JSON.swift).
    rm -rf "$src" && mkdir -p "$src"
    for f in ${SOURCES[$name]}; do
        sed -E '/^(internal |package |public )?import MicroSSE[A-Za-z]*$/d' "$f" \
            >"$src/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -swift-version 6 -O -g -package-name MicroSSE \
        -module-name "Fuzz_$name" Fuzz/targets/Common.swift "Fuzz/targets/$name.swift" "$src"/*.swift ${FLAGS[$name]:-} \
        -o "$OUT/bin/$name" 2>&1 | grep -v 'Cannot export local symbol' >&2 || true
    [ -x "$OUT/bin/$name" ] && [ "$OUT/bin/$name" -nt "Fuzz/targets/$name.swift" ]
}

# The C targets (Fuzz/c/NAME.c) link the C ABI library.
build_c() {
    local name=$1
    if [ ! -f include/microsse.h ]; then
        echo "$name: include/microsse.h does not exist yet; skipped" >&2
        return 1
    fi
    if [ -z "${FUZZ_CABI_LIB:-}" ]; then
        swift build --product MicroSSEC >&2
    fi
    local clang libdir=${FUZZ_CABI_LIB:-.build/debug} extra=()
    clang=$(dirname "$(readlink -f "$(command -v swiftc)")")/clang
    # FUZZ_CABI_LIB=.build-asan/debug (built by scripts/sanitizers.sh) links an ASan-instrumented
    # library, so the library's own writes (id_out, copies of C strings) are checked too; the
    # harness then shares its dynamic ASan runtime.
    [ "$libdir" != .build/debug ] && extra=(-shared-libasan)
    # The library's soname is libmicrosse.so.0 (Package.swift); `make lib` makes the same links.
    [ -e "$libdir/libmicrosse.so" ] || ln -sf libMicroSSEC.so "$libdir/libmicrosse.so"
    [ -e "$libdir/libmicrosse.so.0" ] || ln -sf libMicroSSEC.so "$libdir/libmicrosse.so.0"
    "$clang" -g -O1 -fsanitize=fuzzer,address "${extra[@]}" -Iinclude "Fuzz/c/$name.c" -L"$libdir" -lMicroSSEC \
        -Wl,-rpath,"$ROOT/$libdir" -Wl,-rpath,"$(dirname "$clang")/../lib/swift/clang/lib/linux" -pthread -lm \
        -o "$OUT/bin/$name" 2>&1 | grep -v 'Cannot export local symbol' >&2 || true
    [ -x "$OUT/bin/$name" ] && [ "$OUT/bin/$name" -nt "Fuzz/c/$name.c" ]
}

build() {
    local name=$1
    echo "== building $name" >&2
    if [ -f "Fuzz/c/$name.c" ]; then build_c "$name"; else build_swift "$name"; fi
}

run_one() {
    local name=$1
    local corpus=$OUT/corpus/$name
    local crashes=Fuzz/crashes/$name
    local log=$OUT/logs/$name.log
    mkdir -p "$corpus" "$crashes" "Fuzz/corpus/$name"
    echo "== fuzzing $name for ${SECONDS_EACH}s" >&2
    local rc=0 started label=$name preload=
    started=$(date +%s)
    if [ -f "Fuzz/c/$name.c" ] && [ -n "${FUZZ_CABI_LIB:-}" ]; then
        label="$name (ASan library)"
        preload=$(dirname "$(readlink -f "$(command -v swiftc)")")/../lib/swift/clang/lib/linux/libclang_rt.asan-x86_64.so
    fi
    # Options: a 10 s per-input timeout, 2 GB RSS cap, crashes written under Fuzz/crashes/NAME/,
    # and Fuzz/NAME.dict as libFuzzer's dictionary when it exists.
    local dict=()
    [ -f "Fuzz/$name.dict" ] && dict=(-dict="Fuzz/$name.dict")
    LD_PRELOAD=$preload SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        "$OUT/bin/$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 "${dict[@]}" -artifact_prefix="$crashes/" "$corpus" "Fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
    local execs secs
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    secs=$(($(date +%s) - started))
    local result=clean
    if [ "$rc" -ne 0 ]; then
        result="CRASH($(ls -t "$crashes" | head -1 || true))"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$label" "${secs:-0}" "${execs:-0}" \
        "$(find "$corpus" -type f | wc -l || true)" "$result" >>Fuzz/ledger.tsv
    echo "$label: ${execs:-0} executions in ${secs:-?}s, $result (log: $log)" >&2
    if [ "$rc" -ne 0 ]; then
        grep -m5 -E 'FUZZ PROPERTY|ERROR: AddressSanitizer|Fatal error|deadly signal' "$log" >&2 || true
    fi
    return "$rc"
}

[ -f Fuzz/ledger.tsv ] || printf 'date\ttarget\tseconds\texecutions\tcorpus\tresult\n' >Fuzz/ledger.tsv

built=()
for t in $TARGETS; do
    if build "$t"; then built+=("$t"); else echo "$t: not built" >&2; fi
done
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

status=0
running=0
for t in "${built[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done

scripts/reliability-report.sh fuzz || true
exit "$status"

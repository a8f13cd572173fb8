#!/usr/bin/env bash
# Installs the packages `make deb` built (dpkg -i), uses them as a C programmer and the systemd unit
# would, and removes them (dpkg -P), leaving nothing behind. Needs root (sudo otherwise); refuses
# to run when a MicroSSE package is installed already, and always removes what it installed.
# Usage: scripts/deb-test.sh DEB_DIR   (what `make test-long` runs with out/deb)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
debs="$(cd "${1:?usage: $0 DEB_DIR}" && pwd)"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
packages="libmicrosse0 libmicrosse-dev microsse microsse-dbg"
for pkg in $packages; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$'; then
        echo "$0: $pkg is installed already; not touching it (dpkg -P it to run this test)" >&2
        exit 1
    fi
done
work="$(mktemp -d)"
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    $SUDO dpkg -P $packages >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT
fail() {
    echo "deb-test: FAIL: $*" >&2
    exit 1
}
# The line of FILE matching PATTERN, waiting up to 30 s for it.
await_line() {
    local file="$1" pattern="$2" i
    for i in $(seq 300); do
        grep -m1 -E "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

echo "deb-test: dpkg -i $(cd "$debs" && echo *.deb)"
$SUDO dpkg -i "$debs"/*.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
for pkg in $packages; do
    dpkg-query -W -f='${Status}' "$pkg" | grep -q 'install ok installed' || fail "$pkg not installed"
done

# A C program, built as the -dev package says: pkg-config finds the header and the library.
cp "$root/Examples/c/clock.c" "$work/app.c"
(cd "$work" && cc -std=c99 -Wall -Wextra -Werror -pedantic app.c $(pkg-config --cflags --libs microsse) \
    -pthread -o app) || fail "cc app.c \$(pkg-config --cflags --libs microsse)"
case "$(pkg-config --libs microsse)" in *rpath*) fail "microsse.pc adds an rpath to a system directory" ;; esac
ldd "$work/app" >"$work/ldd"
grep -qE "libmicrosse.so.0 => (/usr)?/lib/[^ ]*/libmicrosse.so.0 " "$work/ldd" ||
    fail "app does not load the packaged library: $(cat "$work/ldd")"
grep -qi swift "$work/ldd" && fail "app loads a Swift library: $(cat "$work/ldd")"
env -i "$work/app" -p 0 -i 1 -t 1 -n 3 >"$work/app.out" 2>"$work/app.err" &
pids+=($!)
line="$(await_line "$work/app.out" 'listening on')" || fail "app printed no address: $(cat "$work/app.err")"
port="$(echo "$line" | sed -n 's/.*:\([0-9][0-9]*\).*/\1/p')"
curl -sN --max-time 30 "http://127.0.0.1:$port/events/news" >"$work/news" &
pids+=($!)
await_line "$work/news" '^data: thread 0 seq 2$' >/dev/null || fail "no events from the C program: $(cat "$work/news")"
echo "deb-test: C program built with pkg-config microsse served 3 events on port $port"

# The same program under valgrind: it reads the packaged library's debug info from microsse-dbg
# (/usr/lib/debug/.build-id, by build id), finds no error and no definite leak.
valgrind -v --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --log-file="$work/valgrind.log" \
    "$work/app" -p 0 -i 1 -t 1 -n 3 >"$work/vg.out" 2>"$work/vg.err" &
vgpid=$!
pids+=($vgpid)
line="$(await_line "$work/vg.out" 'listening on')" || fail "app under valgrind printed no address: $(cat "$work/vg.err")"
port="$(echo "$line" | sed -n 's/.*:\([0-9][0-9]*\).*/\1/p')"
curl -sN --max-time 60 "http://127.0.0.1:$port/events/news" >"$work/vg-news" &
pids+=($!)
await_line "$work/vg-news" '^data: thread 0 seq 2$' >/dev/null || fail "no events under valgrind"
kill -TERM "$vgpid"
vgstatus=0
wait "$vgpid" || vgstatus=$?
grep -E 'Considering /usr/lib/debug/.build-id/.*|ERROR SUMMARY|definitely lost' "$work/valgrind.log" | sed 's/^/deb-test: valgrind: /'
[ "$vgstatus" -eq 0 ] || fail "valgrind exit status $vgstatus: $(cat "$work/valgrind.log")"
grep -qiE 'corrupted debuginfo|Giving up' "$work/valgrind.log" && fail "valgrind could not read debug info"
lib_id="$(readelf -n /usr/lib/*/libmicrosse.so.0 | sed -n 's/^ *Build ID: *//p')"
grep -q "Considering /usr/lib/debug/.build-id/${lib_id:0:2}/${lib_id:2}.debug" "$work/valgrind.log" ||
    fail "valgrind did not read the library's debug file (build id $lib_id)"

# microsse serve as the unit runs it: its ExecStart line, as an unprivileged user, empty
# environment; MICROSSE_OPTIONS (the unit's EnvironmentFile) moves it to a free port.
unit=/lib/systemd/system/microsse.service
[ -f "$unit" ] || fail "$unit not installed"
systemd-analyze verify "$unit" >"$work/verify" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify")"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
case "$exec_start" in /usr/bin/microsse\ serve\ *) ;; *) fail "unexpected ExecStart: $exec_start" ;; esac
hubport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
command="${exec_start//\$MICROSSE_OPTIONS/--port $hubport}"
echo "deb-test: running $command"
# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it (no quotes in it)
setpriv --reuid=nobody --regid=nogroup --clear-groups env -i $command >"$work/hub.out" 2>"$work/hub.err" &
pids+=($!)
await_line "$work/hub.out" "127.0.0.1:$hubport" >/dev/null || fail "microsse serve did not start: $(cat "$work/hub.err")"
curl -sN --max-time 30 "http://127.0.0.1:$hubport/events/news" >"$work/hub-news" &
pids+=($!)
for i in $(seq 100); do
    status="$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary 'packaged' "http://127.0.0.1:$hubport/events/news")"
    [ "$status" = 202 ] || fail "publish answered $status"
    grep -q '^data: packaged$' "$work/hub-news" && break
    sleep 0.1
done
grep -q '^data: packaged$' "$work/hub-news" || fail "no event from microsse serve: $(cat "$work/hub-news")"
echo "deb-test: microsse serve (as the unit runs it) delivered a published event"
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()

# Removal leaves nothing behind: no file the packages listed, nothing named after MicroSSE.
dpkg -L $packages >"$work/files"
$SUDO dpkg -P $packages >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -P"; }
left="$(find /usr/lib /usr/include /usr/bin /usr/share/doc /lib/systemd/system /usr/lib/debug \
    -name '*microsse*' 2>/dev/null || true)"
while read -r path; do
    if [ ! -d "$path" ] && { [ -e "$path" ] || [ -L "$path" ]; }; then left="$left $path"; fi
done <"$work/files"
[ -z "$left" ] || fail "left after dpkg -P: $left"
for pkg in $packages; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' && fail "$pkg still installed"
done
echo "deb-test: ok (installed, built against, served, removed cleanly)"

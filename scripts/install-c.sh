#!/usr/bin/env bash
# Installs MicroSSE's C library: the header, libmicrosse.so (soname libmicrosse.so) and a
# pkg-config file, so that `cc app.c $(pkg-config --cflags --libs microsse)` works; and the
# `microsse` program beside it.
# Usage: scripts/install-c.sh PREFIX BUILD_DIR   (what `make install PREFIX=...` runs)
#   PREFIX/include/microsse.h
#   PREFIX/lib/libmicrosse.so
#   PREFIX/lib/pkgconfig/microsse.pc
#   PREFIX/bin/microsse
# The library and the program need the Swift runtime they were built with at run time (their
# RUNPATH names the toolchain's lib/swift/linux), and libmicrohttpd.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 PREFIX BUILD_DIR" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="$1"
build="$2"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
lib="$build/libMicroSSEC.so"
exe="$build/microsse"
for file in "$lib" "$exe"; do
    if [ ! -f "$file" ]; then
        echo "$0: $file not found; run 'make lib' (or swift build) first" >&2
        exit 1
    fi
done
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
version="$(sed -n 's/^#define MSSE_VERSION "\(.*\)"$/\1/p' "$root/include/microsse.h")"

install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/bin"
install -m 0644 "$root/include/microsse.h" "$prefix/include/microsse.h"
# A real file named after the soname, replacing any earlier file or link.
rm -f "$prefix/lib/libmicrosse.so"
install -m 0755 "$lib" "$prefix/lib/libmicrosse.so"
install -m 0755 "$exe" "$prefix/bin/microsse"
cat >"$prefix/lib/pkgconfig/microsse.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: microsse
Description: Embeddable Server-Sent Events server (C interface)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lmicrosse -Wl,-rpath,\${libdir}
PC
echo "installed microsse $version: $prefix/include/microsse.h, $prefix/lib/libmicrosse.so, $prefix/lib/pkgconfig/microsse.pc, $prefix/bin/microsse"

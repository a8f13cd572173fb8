#!/usr/bin/env bash
# Installs MicroSSE's C library, its header and pkg-config file, and the `microsse` program, so that
# `cc app.c $(pkg-config --cflags --libs microsse)` works. What `make install PREFIX=...` runs
# (with the shipped build) and what `make deb` stages its packages with.
# Usage: [DESTDIR=STAGE] [LIBDIR=DIR] scripts/install-c.sh PREFIX BUILD_DIR
#   PREFIX/include/microsse.h
#   LIBDIR/libmicrosse.so.X.Y.Z      the library, stripped; soname libmicrosse.so.X (X: the ABI)
#   LIBDIR/libmicrosse.so.X          -> libmicrosse.so.X.Y.Z (what programs load)
#   LIBDIR/libmicrosse.so            -> libmicrosse.so.X (what -lmicrosse finds when linking)
#   LIBDIR/pkgconfig/microsse.pc
#   PREFIX/bin/microsse              stripped
#   LIBDIR/.debug/libmicrosse.so.X.Y.Z.debug, PREFIX/bin/.debug/microsse.debug
#                                    the debug info of both, split from them (objcopy
#                                    --only-keep-debug, --add-gnu-debuglink): gdb and valgrind
#                                    find it next to the file wherever the tree is copied.
# With DEBUG_LAYOUT=build-id (what `make deb` uses), the debug files go where Debian puts them
# instead: PREFIX/lib/debug/.build-id/NN/REST.debug, found by the build id (for PREFIX=/usr).
# LIBDIR defaults to PREFIX/lib. DESTDIR stages the files under another root: paths written into
# the files (the .pc) are still PREFIX's. The .pc adds an rpath to LIBDIR unless LIBDIR is one the
# dynamic linker searches anyway (/usr/lib, /usr/lib/<triplet>).
# From the shipped build (`make lib CONFIG=release`) nothing needs the Swift toolchain at run time;
# a debug build (.build/debug) installs too, but needs the toolchain's libraries (its RUNPATH).
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
        echo "$0: $file not found; run 'make lib CONFIG=release' first" >&2
        exit 1
    fi
done
for tool in objcopy readelf; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (Debian package binutils)" >&2
        exit 1
    }
done
destdir="${DESTDIR:-}"
if [ -z "$destdir" ]; then
    mkdir -p "$prefix"
    prefix="$(cd "$prefix" && pwd)"
fi
case "$prefix" in /*) ;; *)
    echo "$0: with DESTDIR, PREFIX must be absolute" >&2
    exit 2
    ;;
esac
libdir="${LIBDIR:-$prefix/lib}"
header="$root/include/microsse.h"
version="$(sed -n 's/^#define MSSE_VERSION "\(.*\)"$/\1/p' "$header")"
major="$(sed -n 's/^#define MSSE_VERSION_MAJOR \([0-9]*\)$/\1/p' "$header")"
soname="libmicrosse.so.$major"
actual="$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
if [ "$actual" != "$soname" ]; then
    echo "$0: $lib has soname '$actual', the header's major version says $soname (Package.swift)" >&2
    exit 1
fi

install -d "$destdir$prefix/include" "$destdir$libdir/pkgconfig" "$destdir$prefix/bin"
install -m 0644 "$header" "$destdir$prefix/include/microsse.h"

layout="${DEBUG_LAYOUT:-beside}"
case "$layout" in beside | build-id) ;; *)
    echo "$0: DEBUG_LAYOUT must be beside or build-id" >&2
    exit 2
    ;;
esac

# Installs FILE stripped to DEST and its debug info, split off, where gdb and valgrind look for
# it (DEBUG_LAYOUT), tied to it by a debuglink (name and CRC) and the build id both keep.
split_install() {
    local file="$1" dest="$2" mode="$3" strip="$4"
    local id debug
    id="$(readelf -n "$file" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')"
    if [ -z "$id" ]; then
        echo "$0: $file has no build id" >&2
        exit 1
    fi
    if [ "$layout" = build-id ]; then
        debug="$prefix/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
    else
        debug="$(dirname "$dest")/.debug/$(basename "$dest").debug"
    fi
    install -d "$(dirname "$destdir$debug")"
    rm -f "$destdir$debug"
    objcopy --only-keep-debug "$file" "$destdir$debug"
    chmod 0644 "$destdir$debug"
    rm -f "$destdir$dest"
    # As dh_strip does: .comment and .note go; the build id (.note.gnu.build-id) stays.
    objcopy $strip --remove-section=.comment --remove-section=.note \
        --add-gnu-debuglink="$destdir$debug" "$file" "$destdir$dest"
    chmod "$mode" "$destdir$dest"
}

rm -f "$destdir$libdir/libmicrosse.so" "$destdir$libdir/$soname"
split_install "$lib" "$libdir/libmicrosse.so.$version" 0644 --strip-unneeded
ln -s "libmicrosse.so.$version" "$destdir$libdir/$soname"
ln -s "$soname" "$destdir$libdir/libmicrosse.so"
split_install "$exe" "$prefix/bin/microsse" 0755 --strip-all

case "$libdir" in
/usr/lib | /usr/lib/*-linux-gnu*) rpath="" ;;
*) rpath=" -Wl,-rpath,\${libdir}" ;;
esac
case "$libdir" in
"$prefix"/*) libdir_pc="\${prefix}${libdir#"$prefix"}" ;;
*) libdir_pc="$libdir" ;;
esac
cat >"$destdir$libdir/pkgconfig/microsse.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=$libdir_pc

Name: microsse
Description: Embeddable Server-Sent Events server (C interface)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lmicrosse$rpath
PC
chmod 0644 "$destdir$libdir/pkgconfig/microsse.pc"
echo "installed microsse $version under $destdir$prefix: include/microsse.h, $libdir/libmicrosse.so.$version ($soname, libmicrosse.so), $libdir/pkgconfig/microsse.pc, bin/microsse, debug info split ($layout)"

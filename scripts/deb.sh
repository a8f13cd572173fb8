#!/usr/bin/env bash
# Builds MicroSSE's Debian packages from the shipped build (`make deb` runs `make ship` first) with
# Debian's own tools: scripts/install-c.sh stages the files, dpkg-shlibdeps computes Depends,
# dpkg-gencontrol writes each DEBIAN/control from packaging/debian/control and its changelog,
# dpkg-deb builds, lintian checks (its report: out/deb/lintian.txt).
#   libmicrosse0      /usr/lib/<triplet>/libmicrosse.so.X.Y.Z and its soname link libmicrosse.so.X
#   libmicrosse-dev   /usr/include/microsse.h, libmicrosse.so, pkgconfig/microsse.pc
#   microsse          /usr/bin/microsse, /lib/systemd/system/microsse.service (not enabled), the
#                     deploy examples (nginx) in /usr/share/doc/microsse/examples
#   microsse-dbg      /usr/lib/debug/.build-id/NN/REST.debug of the library and the program
# Usage: scripts/deb.sh SHIPPED_BUILD_DIR [OUT_DIR]   (OUT_DIR defaults to out/deb)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: $0 SHIPPED_BUILD_DIR [OUT_DIR]}"
out="${2:-$root/out/deb}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
mkdir -p "$out"
out="$(cd "$out" && pwd)"
for tool in dpkg-deb dpkg-shlibdeps dpkg-gencontrol dpkg-architecture lintian; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (make deb installs dpkg-dev and lintian)" >&2
        exit 1
    }
done
version="$(sed -n 's/^#define MSSE_VERSION "\(.*\)"$/\1/p' "$root/include/microsse.h")"
major="$(sed -n 's/^#define MSSE_VERSION_MAJOR \([0-9]*\)$/\1/p' "$root/include/microsse.h")"
debversion="$(sed -n '1s/^microsse (\(.*\)) .*/\1/p' "$root/packaging/debian/changelog")"
if [ "${debversion%-*}" != "$version" ]; then
    echo "$0: packaging/debian/changelog is at $debversion, include/microsse.h at $version: add a changelog entry" >&2
    exit 1
fi
if ! grep -q "^Package: libmicrosse$major\$" "$root/packaging/debian/control"; then
    echo "$0: the library package must be named after the soname (libmicrosse$major)" >&2
    exit 1
fi
triplet="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
arch="$(dpkg-architecture -qDEB_HOST_ARCH)"

# A source-package-like tree: dpkg-gencontrol and dpkg-shlibdeps read debian/ in the current dir.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
cp "$root/packaging/debian/control" "$root/packaging/debian/changelog" "$work/debian/"
cd "$work"
stage="$work/stage"
DESTDIR="$stage" LIBDIR="/usr/lib/$triplet" DEBUG_LAYOUT=build-id "$root/scripts/install-c.sh" /usr "$build" >/dev/null

pkgdir() { echo "$work/debian/$1"; }
# Moves staged PATH (relative to /) into package PKG.
take() {
    local pkg="$1" path="$2"
    mkdir -p "$(dirname "$(pkgdir "$pkg")/$path")"
    mv "$stage/$path" "$(pkgdir "$pkg")/$path"
}
doc() {
    local pkg="$1" dir
    dir="$(pkgdir "$pkg")/usr/share/doc/$pkg"
    install -d "$dir"
    install -m 0644 "$root/packaging/debian/copyright" "$dir/copyright"
    gzip -9n <"$root/packaging/debian/changelog" >"$dir/changelog.Debian.gz"
    chmod 0644 "$dir/changelog.Debian.gz"
}

lib="usr/lib/$triplet"
take "libmicrosse$major" "$lib/libmicrosse.so.$version"
take "libmicrosse$major" "$lib/libmicrosse.so.$major"
take libmicrosse-dev usr/include/microsse.h
take libmicrosse-dev "$lib/libmicrosse.so"
take libmicrosse-dev "$lib/pkgconfig/microsse.pc"
take microsse usr/bin/microsse
take microsse-dbg usr/lib/debug
# The unit as shipped in Examples/deploy, with the program where the package puts it.
install -d "$(pkgdir microsse)/lib/systemd/system" "$(pkgdir microsse)/usr/share/doc/microsse/examples"
sed 's|/usr/local/bin/microsse|/usr/bin/microsse|' "$root/Examples/deploy/microsse.service" \
    >"$(pkgdir microsse)/lib/systemd/system/microsse.service"
chmod 0644 "$(pkgdir microsse)/lib/systemd/system/microsse.service"
for example in nginx.conf nginx-http.conf README.md; do
    install -m 0644 "$root/Examples/deploy/$example" "$(pkgdir microsse)/usr/share/doc/microsse/examples/$example"
done
leftover="$(cd "$stage" && find . -type f -o -type l)"
if [ -n "$leftover" ]; then
    echo "$0: staged but in no package: $leftover" >&2
    exit 1
fi

packages="libmicrosse$major libmicrosse-dev microsse microsse-dbg"
for pkg in $packages; do
    doc "$pkg"
    install -d "$(pkgdir "$pkg")/DEBIAN"
done
# The library's shlibs: programs linked against it depend on this version or later.
printf 'libmicrosse %s libmicrosse%s (>= %s)\n' "$major" "$major" "$version" >"$(pkgdir "libmicrosse$major")/DEBIAN/shlibs"
install -m 0644 "$root/packaging/debian/libmicrosse0.triggers" "$(pkgdir "libmicrosse$major")/DEBIAN/triggers"
# Its symbols file (dpkg-gensymbols): each exported function with the version that added it.
dpkg-gensymbols -q -plibmicrosse$major -P"$(pkgdir "libmicrosse$major")" -v"$version"
sed -i '1a * Build-Depends-Package: libmicrosse-dev' "$(pkgdir "libmicrosse$major")/DEBIAN/symbols"
dpkg-shlibdeps -Tdebian/libmicrosse$major.substvars "$(pkgdir "libmicrosse$major")/$lib/libmicrosse.so.$version"
dpkg-shlibdeps -Tdebian/microsse.substvars "$(pkgdir microsse)/usr/bin/microsse"

rm -f "$out"/*.deb "$out/lintian.txt"
for pkg in $packages; do
    dir="$(pkgdir "$pkg")"
    subst=()
    [ -f "debian/$pkg.substvars" ] && subst=("-Tdebian/$pkg.substvars")
    dpkg-gencontrol -p"$pkg" -P"$dir" "${subst[@]}"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$dir/DEBIAN/md5sums" "$dir/DEBIAN/control"
    find "$dir" -type d -exec chmod 0755 {} +
    dpkg-deb --root-owner-group -Zxz --build "$dir" "$out/${pkg}_${debversion}_$arch.deb" >/dev/null
done
cd "$out"
ls -l -- *.deb
# lintian's findings (every level down to info) are written down in lintian.txt; an error fails.
status=0
lintian --display-info --tag-display-limit 0 -- *.deb >lintian.txt 2>&1 || status=$?
cat lintian.txt
echo "lintian report: $out/lintian.txt"
if grep -q '^E: ' lintian.txt || [ "$status" -gt 1 ]; then
    echo "$0: lintian reports errors (above)" >&2
    exit 1
fi

#!/usr/bin/env bash
# Package a frozen Lineside folder as a .deb.
#
#   installer/linux/make_deb.sh EDITION ONEDIR OUTDIR
#
# Both editions install to /opt/lineside with /usr/bin/lineside, a menu entry and an
# icon; they conflict with each other (a PC is a station or a workstation; the
# workstation does everything the station does), so switching is one `apt install`.
set -euo pipefail

edition=${1:?usage: make_deb.sh station|workstation ONEDIR OUTDIR}
onedir=${2:?frozen folder missing}
outdir=${3:?output folder missing}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

case "$edition" in
  station) other=workstation; summary="line-side inspection station (ONNX Runtime, no training)";;
  workstation) other=station; summary="inspection workstation with one-button retraining (CPU)";;
  *) echo "make_deb.sh: unknown edition '$edition' (station|workstation)" >&2; exit 2;;
esac
[ -x "$onedir/lineside" ] || { echo "make_deb.sh: $onedir/lineside not found; build the folder first" >&2; exit 2; }

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/app/__init__.py")
arch=$(dpkg --print-architecture)
package="lineside-$edition"

# Libraries the frozen folder takes from the system (the spec leaves the desktop stack
# out of the bundle; installer/linux/system_libs.py lists what the built folder needs and
# checks it against this line): X11/xcb for the window, EGL/GL for Qt's painting context,
# fontconfig/freetype for text, D-Bus for the desktop portal, Wayland for Wayland sessions.
# glibc 2.35 and GLIBCXX 3.4.29 are the newest symbol versions the bundle asks for
# (Debian 12, Ubuntu 22.04 and later). "| ...t64": Ubuntu 24.04 renamed the package.
depends="libc6 (>= 2.35), libstdc++6 (>= 11), libgcc-s1, libuuid1, libx11-6, libx11-xcb1, libxcb1, \
libxcb-cursor0, libxcb-glx0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render0, \
libxcb-render-util0, libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-util1, libxcb-xfixes0, libxcb-xkb1, \
libxkbcommon0, libxkbcommon-x11-0, libegl1, libgl1, libfontconfig1, libfreetype6, libdbus-1-3, \
libglib2.0-0 | libglib2.0-0t64, libwayland-client0, libwayland-cursor0, libwayland-egl1"

if command -v readelf >/dev/null && command -v "${PYTHON:-python3}" >/dev/null; then
  "${PYTHON:-python3}" "$here/system_libs.py" "$onedir" --depends "$depends" >&2 \
    || { echo "make_deb.sh: the frozen folder needs a library the Depends line lacks (above)" >&2; exit 1; }
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$package"
mkdir -p "$root/DEBIAN" "$root/opt" "$root/usr/bin" "$root/usr/share/applications" \
  "$root/usr/share/icons/hicolor/256x256/apps" "$root/usr/share/icons/hicolor/scalable/apps" \
  "$root/usr/share/doc/$package"
cp -a "$onedir" "$root/opt/lineside"
ln -s /opt/lineside/lineside "$root/usr/bin/lineside"
install -m 0644 "$here/lineside.desktop" "$root/usr/share/applications/lineside.desktop"
install -m 0644 "$repo/resources/lineside.png" "$root/usr/share/icons/hicolor/256x256/apps/lineside.png"
install -m 0644 "$repo/resources/lineside.svg" "$root/usr/share/icons/hicolor/scalable/apps/lineside.svg"
cat > "$root/usr/share/doc/$package/README" <<EOF
Lineside $version, $edition edition: $summary.
Projects, logs and settings are kept per user (~/Documents/Lineside, ~/.local/share/Lineside,
~/.local/state/Lineside/log); removing the package leaves them in place.
EOF
# Read-only install folder: the app never writes beside itself.
chmod -R u=rwX,go=rX "$root/opt/lineside"
chmod 0755 "$root/opt/lineside/lineside"

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $package
Version: $version
Architecture: $arch
Maintainer: Lineside maintainers <lineside@localhost>
Section: science
Priority: optional
Installed-Size: $installed_kb
Provides: lineside
Conflicts: lineside-$other
Replaces: lineside-$other
Depends: $depends
Description: Lineside quality inspection, $edition edition
 Lineside is a quality-inspection app for the production line: inspectors
 capture part images, label them OK or a defect class, retrain with one button,
 and get a line-side verdict with a heatmap.
 .
 This is the $edition edition: $summary.
EOF

mkdir -p "$outdir"
deb="$outdir/${package}_${version}_${arch}.deb"
# xz keeps the station's download small; the workstation (torch) is mostly shared
# libraries, where single-threaded xz takes a quarter of an hour for a few percent:
# zstd (dpkg >= 1.21.18: Debian 12, Ubuntu 22.04) packs it in a minute.
compress=${DEB_COMPRESS:-$([ "$edition" = workstation ] && echo zstd || echo xz)}
dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb" >/dev/null
echo "$deb"

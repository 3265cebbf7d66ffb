#!/usr/bin/env bash
# Wrap the PyInstaller one-folder build into an AppImage.
#
#   bash packaging/linux/build_appimage.sh [--appdir-only] [DIST_FOLDER] [OUT_DIR]
#
# DIST_FOLDER defaults to dist/desktop-app (made by `python packaging/build.py`), OUT_DIR to
# dist/. Needs appimagetool from https://github.com/AppImage/appimagetool/releases (the
# "continuous" release): set APPIMAGETOOL to its path, or have `appimagetool` on PATH. Current
# appimagetool embeds the static type2-runtime, so the AppImage needs no libfuse2 on the user's
# machine. It downloads that runtime while building; set RUNTIME_FILE to a runtime-x86_64 from
# https://github.com/AppImage/type2-runtime/releases to build offline. With --appdir-only the
# AppDir is assembled (dist/DesktopApp.AppDir) and no AppImage is made.
# VARIANT (cpu, cuda) goes into the file name: DesktopApp-<version>-<variant>-<arch>.AppImage.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
APPDIR_ONLY=0
if [ "${1:-}" = "--appdir-only" ]; then APPDIR_ONLY=1; shift; fi
DIST="$(realpath "${1:-$ROOT/dist/desktop-app}")"
OUT="$(realpath "${2:-$ROOT/dist}")"
ARCH="${ARCH:-$(uname -m)}"
VARIANT="${VARIANT:-cpu}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/desktop_app/__init__.py")"
ICONS="$ROOT/resources/icons"

[ -x "$DIST/desktop-app" ] || { echo "error: $DIST/desktop-app not found; run packaging/build.py" >&2; exit 1; }

APPDIR="$OUT/DesktopApp.AppDir"
rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/bin" "$APPDIR/usr/share/applications" \
    "$APPDIR/usr/share/icons/hicolor/256x256/apps" "$APPDIR/usr/share/icons/hicolor/512x512/apps" \
    "$APPDIR/usr/share/icons/hicolor/scalable/apps"
cp -a "$DIST" "$APPDIR/usr/lib/desktop-app"
ln -s ../lib/desktop-app/desktop-app "$APPDIR/usr/bin/desktop-app"
install -m 755 "$HERE/AppRun" "$APPDIR/AppRun"
install -m 644 "$HERE/desktop-app.desktop" "$APPDIR/desktop-app.desktop"
install -m 644 "$HERE/desktop-app.desktop" "$APPDIR/usr/share/applications/desktop-app.desktop"
install -m 644 "$ICONS/desktop-app.png" "$APPDIR/desktop-app.png"
install -m 644 "$ICONS/desktop-app.png" "$APPDIR/usr/share/icons/hicolor/512x512/apps/desktop-app.png"
install -m 644 "$ICONS/desktop-app-256.png" "$APPDIR/usr/share/icons/hicolor/256x256/apps/desktop-app.png"
install -m 644 "$ICONS/desktop-app.svg" "$APPDIR/usr/share/icons/hicolor/scalable/apps/desktop-app.svg"
ln -s desktop-app.png "$APPDIR/.DirIcon"
echo "AppDir: $APPDIR"
[ "$APPDIR_ONLY" = 1 ] && exit 0

TOOL="${APPIMAGETOOL:-$(command -v appimagetool || true)}"
[ -n "$TOOL" ] || { echo "error: appimagetool not found; set APPIMAGETOOL" >&2; exit 1; }
TARGET="$OUT/DesktopApp-$VERSION-$VARIANT-$ARCH.AppImage"
ARGS=(--no-appstream)
[ -n "${RUNTIME_FILE:-}" ] && ARGS+=(--runtime-file "$RUNTIME_FILE")
# appimagetool is itself an AppImage; extract-and-run works where FUSE is unavailable (containers).
APPIMAGE_EXTRACT_AND_RUN=1 ARCH="$ARCH" "$TOOL" "${ARGS[@]}" "$APPDIR" "$TARGET"
echo "AppImage: $TARGET ($(du -m "$TARGET" | cut -f1) MiB)"

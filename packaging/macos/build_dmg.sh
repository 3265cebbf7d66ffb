#!/usr/bin/env bash
# Sign, notarise and wrap the macOS app in a DMG.
#
#   python packaging/build.py                   # makes "dist/Desktop App.app"
#   bash packaging/macos/build_dmg.sh           # makes dist/DesktopApp-<version>-macos-<variant>.dmg
#
# Every step that needs an Apple account is driven by environment variables and skipped when
# they are absent, so the same script makes an unsigned DMG on any Mac:
#   MACOS_SIGN_IDENTITY   "Developer ID Application: Name (TEAMID)" in the keychain → sign
#   MACOS_NOTARY_PROFILE  a `xcrun notarytool store-credentials` profile            → notarise
#   or APPLE_ID + APPLE_TEAM_ID + APPLE_APP_PASSWORD (app-specific password)         → notarise
#   VARIANT               goes into the file name (default: mps)
# Needs create-dmg (`brew install create-dmg`). Signing is inside-out (every dylib, .so and
# executable, then the bundle) with the hardened runtime and packaging/macos/entitlements.plist;
# `codesign --deep` is used only to verify. The app is notarised and stapled first, so it stays
# valid when copied out of the DMG offline; then the signed DMG is notarised and stapled.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
APP="${APP:-$ROOT/dist/Desktop App.app}"
VARIANT="${VARIANT:-mps}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/desktop_app/__init__.py")"
DMG="$ROOT/dist/DesktopApp-$VERSION-macos-$VARIANT.dmg"
ENTITLEMENTS="$HERE/entitlements.plist"
IDENTITY="${MACOS_SIGN_IDENTITY:-}"

[ -d "$APP" ] || { echo "error: $APP not found; run packaging/build.py on macOS" >&2; exit 1; }

NOTARY=()
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    NOTARY=(--keychain-profile "$MACOS_NOTARY_PROFILE")
elif [ -n "${APPLE_ID:-}" ] && [ -n "${APPLE_TEAM_ID:-}" ] && [ -n "${APPLE_APP_PASSWORD:-}" ]; then
    NOTARY=(--apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" --password "$APPLE_APP_PASSWORD")
fi

sign_one() {
    codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
        --sign "$IDENTITY" "$1"
}

sign_app() {
    echo "Signing $APP as $IDENTITY"
    # Inside-out: libraries and helper executables first (deepest paths first), bundle last.
    find "$APP/Contents" -type f \( -name "*.dylib" -o -name "*.so" -o -perm -u+x \) -print0 |
        while IFS= read -r -d '' file; do
            if file -b "$file" | grep -q "Mach-O"; then
                echo "${#file} $file"
            fi
        done | sort -rn | cut -d' ' -f2- | while IFS= read -r file; do sign_one "$file"; done
    find "$APP/Contents" -type d -name "*.framework" -print0 | while IFS= read -r -d '' fw; do
        sign_one "$fw"
    done
    sign_one "$APP"
    codesign --verify --deep --strict --verbose=2 "$APP"
}

notarise() {  # $1: file to submit (zip or dmg)
    xcrun notarytool submit "$1" --wait "${NOTARY[@]}"
}

if [ -n "$IDENTITY" ]; then
    sign_app
else
    echo "MACOS_SIGN_IDENTITY not set: the app keeps PyInstaller's ad-hoc signature (not notarisable)"
fi

if [ -n "$IDENTITY" ] && [ "${#NOTARY[@]}" -gt 0 ]; then
    ZIP="$(mktemp -d)/DesktopApp.zip"
    ditto -c -k --keepParent "$APP" "$ZIP"   # ditto keeps the framework symlinks intact
    notarise "$ZIP"
    xcrun stapler staple "$APP"
else
    echo "Notarisation credentials not set: skipping notarisation"
fi

rm -f "$DMG"
STAGE="$(mktemp -d)"
ditto "$APP" "$STAGE/$(basename "$APP")"
DMG_ARGS=(--volname "Desktop App" --volicon "$ROOT/resources/icons/desktop-app.icns"
    --window-size 560 340 --icon-size 112 --icon "$(basename "$APP")" 150 160
    --hide-extension "$(basename "$APP")" --app-drop-link 410 160)
[ -n "${CI:-}" ] && DMG_ARGS+=(--skip-jenkins)   # no Finder layout scripting on headless runners
[ -n "$IDENTITY" ] && DMG_ARGS+=(--codesign "$IDENTITY")
create-dmg "${DMG_ARGS[@]}" "$DMG" "$STAGE"
rm -rf "$STAGE"

if [ -n "$IDENTITY" ] && [ "${#NOTARY[@]}" -gt 0 ]; then
    notarise "$DMG"
    xcrun stapler staple "$DMG"
    xcrun stapler validate "$DMG"
fi
echo "DMG: $DMG ($(du -m "$DMG" | cut -f1) MiB)"

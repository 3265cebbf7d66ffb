#!/usr/bin/env bash
# CI smoke test of the packaged app (Linux): build the one-folder app, copy it outside the build
# tree, make the copy read-only, and run the frozen app's checks from there, headless.
#
#   bash packaging/ci_smoke.sh              # build (incremental) + smoke
#   bash packaging/ci_smoke.sh --no-build   # smoke the existing dist/desktop-app
#
# Runs `--bundle-check` (dependencies, lazy imports, samplers, resources, Qt plugins) with stdout
# and stderr closed (a windowed start), then `--self-test` (the real window and one generation),
# prints each JSON line and the build size and times. Exit code 0 only when both pass. When run as root (where chmod does not stop writes)
# the app runs as user nobody, so the read-only install folder really is read-only, and in a
# network namespace without interfaces, so any network access would fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
CHECK_TIMEOUT="${SMOKE_TIMEOUT:-420}"
BUILD=1
[ "${1:-}" = "--no-build" ] && BUILD=0

t0=$(date +%s)
if [ "$BUILD" = 1 ]; then
    if ! "$PY" -m PyInstaller --version >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[package]"
    fi
    "$PY" packaging/build.py
fi
t1=$(date +%s)
[ -x dist/desktop-app/desktop-app ] || { echo "smoke: dist/desktop-app/desktop-app missing" >&2; exit 1; }

WORK="$(mktemp -d /tmp/desktop-app-smoke.XXXXXX)"
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
chmod 755 "$WORK"
cp -a dist/desktop-app "$WORK/desktop-app"
chmod -R a-w "$WORK/desktop-app"
mkdir -m 777 "$WORK/home"

AS_USER=()
ISOLATION="read-only install folder"
if [ "$(id -u)" = 0 ]; then
    AS_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    ISOLATION="$ISOLATION, user nobody"
    # A private network namespace with no interfaces: proof that the app never needs the network.
    if unshare -n true 2>/dev/null; then
        AS_USER=(unshare -n "${AS_USER[@]}")
        ISOLATION="$ISOLATION, no network"
    fi
fi
echo "smoke: running from $WORK/desktop-app ($ISOLATION)"

# Run one check of the frozen app and print its JSON line; return its exit status.
# With "closed", stdout and stderr are closed, as in a windowed app started from a desktop:
# the entry script must then send the output to $DESKTOP_APP_HOME/logs/console.log.
run_check() {
    local flag="$1" streams="$2" out="$WORK/home/out$1.txt" err="$WORK/home/err$1.txt" status=0
    local -a cmd=(env -i PATH=/usr/bin:/bin HOME="$WORK/home" XDG_CACHE_HOME="$WORK/home/cache"
        DESKTOP_APP_HOME="$WORK/home/app" QT_QPA_PLATFORM=offscreen LANG=C.UTF-8
        "${AS_USER[@]}" timeout "$CHECK_TIMEOUT" "$WORK/desktop-app/desktop-app" "$flag")
    if [ "$streams" = closed ]; then
        "${cmd[@]}" >&- 2>&- || status=$?
        out="$WORK/home/app/logs/console.log"
        err="$out"
    else
        "${cmd[@]}" >"$out" 2>"$err" || status=$?
    fi
    local json
    json="$(grep -E '^\{.*\}$' "$out" 2>/dev/null | tail -n 1 || true)"
    if [ -n "$json" ]; then
        echo "smoke $flag ($streams streams): $json"
    else
        echo "smoke $flag: no JSON line (exit $status)" >&2
    fi
    if [ "$status" != 0 ] || [ -z "$json" ]; then
        tail -n 40 "$out" "$err" >&2 2>/dev/null || true
        [ "$status" != 0 ] || status=1
    fi
    return "$status"
}

status=0
run_check --bundle-check closed || status=1
t2=$(date +%s)
run_check --self-test open || status=1
t3=$(date +%s)

size_mib=$(du -sm dist/desktop-app | cut -f1)
echo "smoke: dist/desktop-app ${size_mib} MiB; build $((t1 - t0)) s, bundle-check $((t2 - t1)) s, self-test $((t3 - t2)) s, total $((t3 - t0)) s"
[ "$status" = 0 ] && echo "smoke: OK" || echo "smoke: FAILED" >&2
exit "$status"

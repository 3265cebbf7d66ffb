#!/usr/bin/env bash
# Set up .venv with the app and start it (on the bundled demo model when no other is chosen).
# Usage: bash tools/run.sh [desktop-app arguments]
# pip runs only when pyproject.toml or constraints.txt changed since the last install (a stamp
# in .venv records their hash): checking an installed venv took pip ~4-5 s on every start.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
STAMP=.venv/.desktop-app-installed
WANT="$(.venv/bin/python -c 'import hashlib, sys
print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' \
  pyproject.toml constraints.txt)"
if [ ! -x .venv/bin/desktop-app ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .
  echo "$WANT" > "$STAMP"
fi
exec .venv/bin/desktop-app "$@"

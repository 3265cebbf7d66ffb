#!/usr/bin/env bash
# Set up .venv with the app and start it (on the bundled demo model when no other is chosen).
# Usage: bash tools/run.sh [desktop-app arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .
exec .venv/bin/desktop-app "$@"

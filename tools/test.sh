#!/usr/bin/env bash
# Set up a development environment in .venv and run the whole test suite plus lint and types.
# Usage: bash tools/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
.venv/bin/ruff check desktop_app tests tools benchmarks packaging
.venv/bin/mypy desktop_app
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

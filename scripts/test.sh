#!/usr/bin/env bash
# Set up the development environment, lint and type-check, and run the test suite:
#   bash scripts/test.sh [pytest args]
# ruff (style, imports, common bugs) and mypy (strict on plan/ and engines/) run first; either
# failing stops the run. Settings live in pyproject.toml.
set -euo pipefail
source "$(dirname "$0")/dev-env.sh"
cd "$ROOT"
"$VENV/bin/python" -m ruff check --quiet src tests benchmarks
"$VENV/bin/python" -m mypy --no-error-summary
exec "$VENV/bin/python" -m pytest "$@"

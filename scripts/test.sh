#!/usr/bin/env bash
# Set up the development environment and run the test suite: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/dev-env.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"

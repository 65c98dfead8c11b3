#!/usr/bin/env bash
# Set up sparkserve and run the main job. Until `sparkserve demo` exists this plans the default
# stack (Qwen3-32B on vLLM + Ollama on a DGX Spark).
set -euo pipefail
source "$(dirname "$0")/dev-env.sh"
cd "$ROOT"
exec "$VENV/bin/sparkserve" plan "$@"

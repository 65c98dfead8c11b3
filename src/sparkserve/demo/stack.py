"""The demo's stack file: one native vLLM on this machine's CPU serving the tiny local model.

The hardware catalog has no CPU profile on purpose (every profile number has a source, and
a CPU's "GPU memory" and "bandwidth" would be invented), so the demo plans the same service
on a DGX Spark, the machine sparkserve is built for, and labels the plan as such. vLLM's CPU
build ignores --gpu-memory-utilization once VLLM_CPU_KVCACHE_SPACE fixes the KV cache (GiB).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

SERVICE = "tiny"
SERVED_NAME = "tiny"
PLAN_HARDWARE = "dgx-spark"
MAX_MODEL_LEN = 2048
KV_CACHE_SPACE_GIB = 1
# HF_HUB_OFFLINE: the model is a local folder, nothing may be downloaded. THREADS_BIND=auto
# leaves one core to the API server. No usage statistics leave the machine.
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_SPACE_GIB),
    "VLLM_CPU_OMP_THREADS_BIND": "auto",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def cpu_serve_argv(vllm: str, model_dir: Path, port: int, max_model_len: int = MAX_MODEL_LEN) -> list[str]:
    """`vllm serve` of the tiny model on this CPU without a stack: the recipe tests and benchmarks share."""
    return [vllm, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--served-model-name",
            SERVED_NAME, "--max-model-len", str(max_model_len), "--enforce-eager"]


def demo_stack_text(model_dir: Path, vllm: str, port: int, *, env: Mapping[str, str] | None = None,
                    args: Mapping[str, str | int | float | bool] | None = None) -> str:
    """TOML for the demo stack; paths are written as JSON strings (valid TOML basic strings).

    `env` adds to (or replaces) the demo's environment and `args` adds server arguments: the tests and
    benchmarks that need a native CPU vLLM stack start from this one rather than writing their own."""
    env_text = ", ".join(f"{k} = {json.dumps(v)}" for k, v in {**CPU_ENV, **(env or {})}.items())
    extra = [f"{k} = {json.dumps(v)}" for k, v in (args or {}).items()]
    return "\n".join([
        "# Written by `sparkserve demo`: a tiny random-weight Qwen3 served by vLLM on this machine's CPU.",
        f"# The plan is for a {PLAN_HARDWARE} (there is no CPU profile); the demo measures the CPU.",
        "",
        "[stack]",
        f"hardware = {json.dumps(PLAN_HARDWARE)}",
        f"vllm = {json.dumps(vllm)}",
        "",
        f"[services.{SERVICE}]",
        'engine = "vllm"',
        f"model = {json.dumps(str(model_dir))}",
        f"port = {port}",
        'runtime = "native"',
        f"env = {{ {env_text} }}",
        "",
        f"[services.{SERVICE}.args]",
        f"served_model_name = {json.dumps(SERVED_NAME)}",
        f"max_model_len = {MAX_MODEL_LEN}",
        "enforce_eager = true  # no torch.compile: ready in about 30 s instead of 60-80 s",
        *extra,
        "",
    ])

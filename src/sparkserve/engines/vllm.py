"""vLLM: default arguments, the flags sparkserve emits, and what it accepts.

Everything that depends on vLLM's command line or behaviour lives here; the planner asks this
module for defaults instead of hard-coding them.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME = "vllm"

# vLLM `EngineArgs` defaults (vllm/engine/arg_utils.py, v0.10-v0.19; checked against
# `vllm serve --help=all` of vLLM 0.32 CPU on this machine per shared/notes/field-notes.md).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # field notes: "the default --gpu-memory-utilization is 0.92" (vLLM 0.32)
DEFAULT_BLOCK_SIZE = 16  # CacheConfig.block_size default on CUDA
# EngineArgs.get_batch_defaults: for the OpenAI server on GPUs with >= 70 GiB whose name is not
# an A100 (H100, H200, GH200, RTX PRO 6000, GB10) max_num_batched_tokens 8192 and max_num_seqs
# 1024; otherwise (A100, L40S, RTX 4090/5090) 2048 and 256. vLLM 0.19 logs print "Defaulting
# max_num_batched_tokens to 8192" on H100.
LARGE_GPU_GIB = 70
DEFAULT_MAX_NUM_BATCHED_TOKENS = {True: 8192, False: 2048}
DEFAULT_MAX_NUM_SEQS = {True: 1024, False: 256}
# CUDA graphs are captured for batch sizes up to this (CompilationConfig.max_cudagraph_capture_size).
DEFAULT_MAX_CUDAGRAPH_CAPTURE_SIZE = 512

# `--kv-cache-dtype` choices (vLLM CacheConfig; "auto" is the model's dtype).
KV_CACHE_DTYPES = ("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2")

# Flags that current vLLM rejects ("unrecognized arguments"): never emit them.
REMOVED_FLAGS = frozenset({"--swap-space", "--disable-log-requests", "--use-v2-block-manager"})


@dataclass(frozen=True)
class VllmDefaults:
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int = DEFAULT_BLOCK_SIZE


def defaults_for(hw) -> VllmDefaults:
    large = hw.gpu_memory_gib >= LARGE_GPU_GIB and not hw.id.startswith("a100")
    return VllmDefaults(
        gpu_memory_utilization=DEFAULT_GPU_MEMORY_UTILIZATION,
        max_num_batched_tokens=DEFAULT_MAX_NUM_BATCHED_TOKENS[large],
        max_num_seqs=DEFAULT_MAX_NUM_SEQS[large],
    )


QUANT_FLAG = {
    # `--quantization` is inferred from a pre-quantised checkpoint; only on-the-fly FP8 needs the flag.
    "fp8": "fp8",
}


def recommended_args(settings: dict, *, model_id: str, quant: str, checkpoint_quant: str | None,
                     max_model_len: int, served_name: str | None = None) -> list[str]:
    """`vllm serve` arguments for a planned deployment; only flags current vLLM accepts."""
    args = [model_id]
    if served_name:
        args += ["--served-model-name", served_name]
    if quant in QUANT_FLAG and checkpoint_quant != quant and not model_id.lower().endswith(("-fp8", "-fp8-dynamic")):
        args += ["--quantization", QUANT_FLAG[quant]]
    args += [
        "--gpu-memory-utilization", f"{settings['gpu_memory_utilization']:.2f}",
        "--max-model-len", str(max_model_len),
        "--max-num-batched-tokens", str(settings["max_num_batched_tokens"]),
        "--max-num-seqs", str(settings["max_num_seqs"]),
    ]
    if settings.get("kv_cache_dtype", "auto") != "auto":
        args += ["--kv-cache-dtype", str(settings["kv_cache_dtype"])]
    tp = int(settings.get("tensor_parallel_size", 1))
    if tp > 1:
        args += ["--tensor-parallel-size", str(tp)]
    if settings.get("nodes", 1) > 1:
        args += ["--distributed-executor-backend", "ray"]
    if settings.get("enforce_eager"):
        args.append("--enforce-eager")
    args += ["--enable-prefix-caching", "--enable-chunked-prefill"]
    return [a for a in args if a not in REMOVED_FLAGS]


# Container images. x86_64: the project's CUDA 13 build (driver 580+); aarch64 (DGX Spark, GH200):
# NVIDIA's NGC build, which ships arm64 kernels for sm_121 (field notes). Pinned so flags match
# a known release; a stack's `image` key overrides either.
IMAGE_X86_64 = "vllm/vllm-openai:v0.30.0"
IMAGE_AARCH64 = "nvcr.io/nvidia/vllm:26.08-py3"
CONTAINER_PORT = 8000  # `vllm serve` default --port
HEALTH_PATH = "/health"
# Secrets vLLM reads from its environment instead of a flag (`--api-key` falls back to VLLM_API_KEY).
SECRET_ENV = {"api_key": "VLLM_API_KEY"}


def image_for(hw) -> str:
    """The vLLM image that runs on this hardware's CPU architecture."""
    return IMAGE_AARCH64 if getattr(hw, "cpu_arch", "x86_64") == "aarch64" else IMAGE_X86_64


def flag_for(key: str) -> str:
    """`max_model_len` -> `--max-model-len` (stack args use TOML-friendly underscores)."""
    return "--" + key.strip().lstrip("-").replace("_", "-")


def stack_arg_problem(key: str) -> str | None:
    """Why a stack `args` key cannot become a flag, or None when it can."""
    if key in SECRET_ENV:
        return f"secrets never go in the stack file; set {SECRET_ENV[key]} in .env (vLLM reads it from the environment)"
    if flag_for(key) in REMOVED_FLAGS:
        return f"current vLLM no longer accepts {flag_for(key)}; remove it"
    if key in ("model", "host", "port"):
        return f"{key} is set by sparkserve from the service itself; remove it from args"
    return None


def serve_args(planned: list[str], overrides: dict) -> list[str]:
    """`vllm serve` arguments: the planner's, with the stack's `args` taking precedence.

    True becomes a bare flag, False its `--no-` form (vLLM's boolean flags accept both), lists
    repeat their values after one flag.
    """
    model, flags = planned[0], _parse_flags(planned[1:])
    for key, value in overrides.items():
        flag = flag_for(key)
        flags.pop("--no-" + flag[2:], None)
        flags.pop(flag, None)
        if value is False:
            flags["--no-" + flag[2:]] = True
        else:
            flags[flag] = value
    out = [model]
    for flag, value in flags.items():
        if flag in REMOVED_FLAGS:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *(_text(v) for v in value)]
        else:
            out += [flag, _text(value)]
    return out


def _parse_flags(args: list[str]) -> dict[str, object]:
    flags: dict[str, object] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[flag] = args[i + 1]
            i += 2
        else:
            flags[flag] = True
            i += 1
    return flags


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def healthcheck_test() -> list[str]:
    """200 from /health once the engine is alive; /health is open even when an API key is set."""
    return ["CMD", "curl", "-fsS", f"http://localhost:{CONTAINER_PORT}{HEALTH_PATH}"]

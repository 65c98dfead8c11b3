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

"""How much of the hardware each engine achieves: a few numbers per engine, fitted by a script.

`benchmarks/fit_calibration.py` fits them on the measurements in `data/calibration/` (each row
with its source) and writes `calibration.json` next to this module, with the rows each value was
fitted on and the hashes of the script and its inputs. This module only reads that file;
`benchmarks/plan_accuracy.py` scores the values on data they were not fitted on. They are per
engine, not per model: the physics in `speed.py` and `memory.py` carries the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from sparkserve.hardware.profile import HardwareProfile

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")

# The engines the planner knows; each has a block in calibration.json.
ENGINES = ("vllm", "sglang", "trtllm", "llama.cpp", "ollama")


@dataclass(frozen=True)
class Efficiency:
    bandwidth: float  # share of the profile's effective (measured streaming) bandwidth decode achieves
    step_overhead_ms: float  # fixed cost of one engine step: scheduling, kernel launches
    compute: float  # share of dense tensor TFLOPS large dense matmuls achieve (MoE's experts: expert_compute)
    gemm_half_rows: float  # tokens per matmul (per expert for MoE) at which it reaches half that share
    request_overhead_ms: float  # HTTP, tokenisation and scheduling before the first token
    moe_layer_overhead_ms: float = 0.0  # extra per MoE layer and step: routing, top-k, expert alignment kernels
    seq_overhead_ms: float = 0.0  # extra per sequence and step: sampling, detokenising, scheduler bookkeeping
    # How independently a batch's tokens pick MoE experts: B tokens route like B^spread independent ones
    # (1: uniform routing; less: tokens of one batch share experts more than chance; speed.experts_touched_fraction).
    expert_spread: float = 1.0
    # tokens per expert at which MoE's grouped expert matmuls (gather, per-expert tiles, scatter) reach
    # half the compute share: a kernel of its own, slower to fill than a dense GEMM of the same rows
    expert_half_rows: float = 64.0
    # extra per layer and step without CUDA graphs (--enforce-eager): every kernel launched from Python
    eager_layer_overhead_ms: float = 0.0
    # share of the BF16 dense peak that the engine's attention kernels reach (0: the `compute` share)
    attention_compute: float = 0.0
    # the same share for an engine's portable fallback kernel (vLLM's TRITON_ATTN), where the model or the GPU
    # rules the FlashAttention-class kernels out (Engine.fallback_attention); 0: attention_compute
    fallback_attention_compute: float = 0.0
    # share of the routed experts' peak that the engine's grouped MoE matmuls reach at full tiles (0: `compute`):
    # a gathered, scattered grouped GEMM reaches about half of what a dense GEMM does (linkedin/Liger-Kernel#1294)
    expert_compute: float = 0.0
    # what a weight-only kernel (Marlin: 4- or 8-bit weights dequantised in registers, multiplied in BF16) reaches
    # of a BF16 GEMM once compute bound (0: speed.WEIGHT_ONLY_GEMM, the one benchmark of it, vllm#2497)
    weight_only_gemm: float = 0.0
    prefill_chunk: int = 8192  # tokens one forward pass takes (vLLM max-num-batched-tokens, llama.cpp n_ubatch)


FITTED = tuple(f.name for f in fields(Efficiency) if f.name != "prefill_chunk")


@dataclass(frozen=True)
class VllmMemoryConstants:
    """vLLM start-up accounting that is not arithmetic on the model (see plan/memory.py)."""

    sampler_bytes_per_logit: float  # the sampler's dry run: fp32 logits, probabilities, sort indices
    profile_base_gib: float  # input buffers and residual stream of the profiling run
    non_torch_gib_single: float  # allocations outside PyTorch on one GPU (cuBLAS workspaces)
    non_torch_gib_tp: float  # the same per GPU under tensor parallelism (NCCL, custom all-reduce)
    cuda_graph_base_gib: float  # CUDA-graph pool: fixed part
    cuda_graph_per_layer_gib: float  # one piecewise graph per layer
    cuda_graph_tp_gib: float  # extra per GPU under tensor parallelism


@lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    """The committed fit (a few kB of JSON: reading it costs well under a millisecond)."""
    fit: dict[str, Any] = json.loads(CALIBRATION_FILE.read_text())
    return fit


def efficiency_from(values: dict[str, Any]) -> Efficiency:
    return Efficiency(**{f.name: values[f.name] for f in fields(Efficiency) if f.name in values})


def hardware_class(hw: HardwareProfile) -> str:
    """The Spark (unified LPDDR5x, its own sm_121 kernels), else the discrete GPU's architecture: attention
    kernels reach a different share of each one's peak (FlashAttention-2 reaches 50-73 % of an A100's BF16 peak
    and about 35 % of an H100's, FlashAttention-3 75 % of an H100's: https://arxiv.org/abs/2307.08691,
    https://arxiv.org/abs/2407.08608), so benchmarks/fit_calibration.py fits that share per class."""
    return "gb10" if hw.unified else hw.arch


def efficiency_for(engine: str, hw: HardwareProfile | None = None) -> Efficiency:
    """The fitted numbers for a calibrated engine (with those fitted for the hardware's class where the
    data had them), else the ones an added engine declares (`Engine.efficiency`)."""
    fitted = calibration()["engines"]
    if engine in fitted:
        values = dict(fitted[engine]["values"])
        if hw is not None:
            values.update(fitted[engine].get("by_hardware_class", {}).get(hardware_class(hw), {}))
        return efficiency_from(values)
    from sparkserve.engines import get_engine
    from sparkserve.errors import UserError

    declared: Efficiency | None = get_engine(engine).efficiency
    if declared is None:
        raise UserError(f"engine {engine!r} has no speed calibration: give it an `efficiency` (engines/base.py)")
    return declared


def vllm_memory_constants() -> VllmMemoryConstants:
    return VllmMemoryConstants(**calibration()["vllm_memory"]["values"])

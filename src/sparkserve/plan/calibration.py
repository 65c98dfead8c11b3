"""How much of the hardware each engine achieves: a few numbers per engine, fitted once.

The values were fitted on `data/calibration/perf-calibration.csv` (real measurements with
sources) by `benchmarks/plan_accuracy.py`, which also reports the error per metric in
docs/accuracy.md. They are per engine, not per model: the physics in `speed.py` carries the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkserve.hardware.profile import HardwareProfile


@dataclass(frozen=True)
class Efficiency:
    bandwidth: float  # share of the profile's effective (measured streaming) bandwidth decode achieves
    step_overhead_ms: float  # fixed cost of one engine step: scheduling, sampling, kernel launches
    compute: float  # share of dense tensor TFLOPS large prefill matmuls achieve
    gemm_half_rows: float  # tokens per matmul (per expert for MoE) at which it reaches half that share
    request_overhead_ms: float  # HTTP, tokenisation and scheduling before the first token
    moe_layer_overhead_ms: float = 0.0  # extra per MoE layer and step: routing, top-k, expert alignment kernels
    prefill_chunk: int = 8192  # tokens one prefill forward takes (vLLM max-num-batched-tokens, llama.cpp n_ubatch)


ENGINE_EFFICIENCY: dict[str, Efficiency] = {
    "vllm": Efficiency(bandwidth=0.95, step_overhead_ms=2.0, compute=0.50, gemm_half_rows=64,
                       request_overhead_ms=15, moe_layer_overhead_ms=0.12, prefill_chunk=8192),
    "sglang": Efficiency(bandwidth=0.90, step_overhead_ms=2.0, compute=0.50, gemm_half_rows=64,
                         request_overhead_ms=15, moe_layer_overhead_ms=0.12, prefill_chunk=8192),
    "trtllm": Efficiency(bandwidth=0.95, step_overhead_ms=1.5, compute=0.32, gemm_half_rows=64,
                         request_overhead_ms=10, moe_layer_overhead_ms=0.08, prefill_chunk=8192),
    "llama.cpp": Efficiency(bandwidth=1.00, step_overhead_ms=1.5, compute=0.34, gemm_half_rows=36,
                            request_overhead_ms=5, moe_layer_overhead_ms=0.03, prefill_chunk=512),
    "ollama": Efficiency(bandwidth=0.88, step_overhead_ms=2.0, compute=0.30, gemm_half_rows=36,
                         request_overhead_ms=20, moe_layer_overhead_ms=0.03, prefill_chunk=512),
}

ENGINES = tuple(ENGINE_EFFICIENCY)


def efficiency_for(engine: str, hw: HardwareProfile) -> Efficiency:
    return ENGINE_EFFICIENCY[engine]

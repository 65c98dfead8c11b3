"""Fit every per-engine constant of the planner on the measurements and write plan/calibration.json.

    python benchmarks/fit_calibration.py [--check]

Speed constants (plan/calibration.py: Efficiency) are fitted on data/calibration/perf-calibration.csv:
first one pooled set over every engine, then each engine's own, pulled towards the pooled set by a
ridge term so that an engine with few rows keeps the pooled value for what its rows do not show.
The loss is the sum of squared log errors, each row weighted by how directly it measures (a prompt rate with
llama-benchy's generation latency taken out counts less: see `row_weight`); the search is a deterministic
coordinate descent over geometric grids, each coarse grid refined between the best point's neighbours (the
pooled fit's too: the constants every engine shares keep its value). vLLM's start-up memory constants are fitted on the
component sizes its start-up logs print (torch peak, non-torch memory, CUDA graphs). The file records
the values, the rows each group was fitted on and the SHA-256 of this script and of its inputs, and is
rewritten byte for byte by a re-run (`--check` exits 1 when the committed file differs from a fresh fit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration_rows import (
    GIB,
    MEMORY_CSVS,
    PERF_CSV,
    ROOT,
    MemoryRow,
    PerfRow,
    load_memory,
    load_perf,
    predict,
    probe_ttft_ms,
)

from sparkserve.plan.calibration import CALIBRATION_FILE, ENGINES, FITTED, Efficiency, VllmMemoryConstants
from sparkserve.plan.memory import vllm_activation_peak_bytes
from sparkserve.plan.speed import WEIGHT_ONLY_GEMM

# Search range of each fitted constant (physically plausible bounds).
BOUNDS = {
    "bandwidth": (0.4, 1.3),
    "step_overhead_ms": (0.05, 20.0),
    "compute": (0.05, 1.0),
    "gemm_half_rows": (1.0, 2048.0),
    "request_overhead_ms": (0.5, 500.0),
    "moe_layer_overhead_ms": (0.001, 1.0),
    "seq_overhead_ms": (0.001, 2.0),
    "expert_spread": (0.05, 1.0),
    "expert_half_rows": (1.0, 4096.0),
    "eager_layer_overhead_ms": (0.001, 1.0),
    "attention_compute": (0.05, 1.0),
    "fallback_attention_compute": (0.02, 1.0),
    "expert_compute": (0.05, 1.0),
    "weight_only_gemm": (0.3, 1.0),
}
START = {"bandwidth": 0.9, "step_overhead_ms": 2.0, "compute": 0.4, "gemm_half_rows": 64.0,
         "request_overhead_ms": 15.0, "moe_layer_overhead_ms": 0.05, "seq_overhead_ms": 0.05,
         "expert_spread": 1.0, "expert_half_rows": 64.0,
         "eager_layer_overhead_ms": 0.05, "attention_compute": 0.4, "fallback_attention_compute": 0.2,
         "expert_compute": 0.4, "weight_only_gemm": WEIGHT_ONLY_GEMM}
# Fitted once over every engine's rows: how B tokens of a batch spread over MoE experts is routing,
# a property of the model and its inputs, not of the engine that runs it.
# Eager PyTorch's launch cost per layer is the framework's, not the serving engine's.
# What a weight-only kernel reaches of a BF16 GEMM is the kernel's (Marlin, in vLLM and SGLang alike); its rows are
# vLLM's and SGLang's MXFP4 and FP8 runs on A100s and H100s, which lack those formats, and Marlin runs on the Spark.
# Attention shares are each engine's: llama.cpp's ggml kernels are not the FlashAttention / FlashInfer ones
# vLLM and SGLang run, and the fallback share is that of the engine's own portable kernel (only vLLM's rows
# meet one, so it is fitted beside vLLM's matmul shares; engines without such rows keep the pooled value).
SHARED = ("expert_spread", "eager_layer_overhead_ms", "weight_only_gemm")
# Fitted per engine and class of hardware (plan/calibration.py: hardware_class) where the engine has rows on it:
# the share of peak an attention kernel reaches differs by GPU architecture (the papers cited there), and the
# long-prompt rows on A100s and H100s of one lab (GPUStack) imply it (vLLM 0.11 and TensorRT-LLM 1.2 alike).
PER_CLASS: tuple[str, ...] = ("attention_compute",)
# Physical defaults for a constant no row of a fit constrains (value, source).
DEFAULTS = {
    # vLLM issue #770 (2023): an 8B model on an A5000 answers an 8-token prompt in ~62 ms, of which
    # one pass over 16 GB of BF16 weights at 768 GB/s is ~21 ms: ~40 ms of HTTP, tokenising and scheduling.
    "request_overhead_ms": (40.0, "https://github.com/vllm-project/vllm/issues/770"),
    # vllm-project/vllm-omni issue #7960: Qwen2.5-Omni-7B's thinker (28 layers) on an A800 decodes at
    # ~22.5 ms per token eager and ~13 ms with CUDA graphs: ~0.34 ms per layer and step.
    "eager_layer_overhead_ms": (0.34, "https://github.com/vllm-project/vllm-omni/issues/7960"),
    # Marlin's bench.py: 141 TFLOPS from 256 rows on against torch's BF16 GEMM at 231-235 (speed.WEIGHT_ONLY_GEMM).
    "weight_only_gemm": (WEIGHT_ONLY_GEMM, "https://github.com/vllm-project/vllm/pull/2497"),
}
RIDGE = 0.05  # weight of log(value / pooled value)^2 per constant in an engine's own fit
GRID = 24  # points per coarse grid; a finer grid of 9 around the best follows
PASSES = 3

# Not fitted: how many prompt tokens one forward pass takes, the engines' own defaults.
PREFILL_CHUNK = {
    "vllm": 8192,  # unused in plans: vLLM's default depends on the GPU (Vllm.default_prefill_chunk)
    "sglang": 8192,  # chunked-prefill-size default for large GPUs (sglang server_args.py)
    "trtllm": 8192,  # max_num_tokens default (tensorrt_llm BuildConfig)
    "llama.cpp": 512,  # n_ubatch default (common/common.h)
    "ollama": 512,  # num_batch default (ollama api/types.go)
}


def _geomspace(lo: float, hi: float, n: int) -> list[float]:
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def row_weight(row: PerfRow) -> float:
    """How much a row counts in the loss. llama-benchy's prompt rate with the generation latency taken out,
    prompt / (T - L), is a difference of two times: a relative error of either reaches the rate multiplied by
    sqrt(T^2 + L^2) / (T - L), so the row counts (T - L)^2 / (T^2 + L^2) of a direct measurement. T - L comes
    from the row, L is the plan's probe (calibration_rows.Measure.probe_tokens) at the search's starting
    constants, so the weight does not move with the fit. Every other row weighs 1."""
    if row.metric != "prefill_tps" or row.how.pp_latency != "generation":
        return 1.0
    if row.id not in _WEIGHTS:
        latency = probe_ttft_ms(row, Efficiency(prefill_chunk=PREFILL_CHUNK[row.engine], **START))
        marginal = row.work.prompt_len / row.measured * 1000
        _WEIGHTS[row.id] = marginal**2 / ((marginal + latency) ** 2 + latency**2)
    return _WEIGHTS[row.id]


_WEIGHTS: dict[str, float] = {}


def _loss(rows: list[PerfRow], eff: Efficiency, prior: Efficiency | None) -> float:
    total = 0.0
    for row in rows:
        total += row_weight(row) * math.log(max(predict(row, eff), 1e-12) / row.measured) ** 2
    if prior is not None:
        for name in FITTED:
            total += RIDGE * math.log(getattr(eff, name) / getattr(prior, name)) ** 2
    return total


def _refine(loss_of: Callable[[Efficiency], float], eff: Efficiency, best: float,
            name: str) -> tuple[float, Efficiency]:
    """A finer grid of 9 between the neighbours of the best coarse point (a coarse step is 14 %)."""
    lo, hi = BOUNDS[name]
    step = (hi / lo) ** (1 / (GRID - 1))
    centre = getattr(eff, name)
    for v in _geomspace(max(lo, centre / step), min(hi, centre * step), 9):
        trial = replace(eff, **{name: v})
        loss = loss_of(trial)
        if loss < best - 1e-12:
            best, eff = loss, trial
    return best, eff


def _descend(rows: list[PerfRow], eff: Efficiency, prior: Efficiency | None, names: tuple[str, ...]) -> Efficiency:
    def loss_of(e: Efficiency) -> float:
        return _loss(rows, e, prior)

    best = loss_of(eff)
    for _ in range(PASSES):
        for name in names:
            lo, hi = BOUNDS[name]
            for v in _geomspace(lo, hi, GRID):
                trial = replace(eff, **{name: v})
                loss = loss_of(trial)
                if loss < best - 1e-12:
                    best, eff = loss, trial
            best, eff = _refine(loss_of, eff, best, name)
    return eff


def _with_chunk(rows: list[PerfRow], eff: Efficiency) -> Efficiency:
    return replace(eff, prefill_chunk=PREFILL_CHUNK[rows[0].engine]) if rows else eff


def fit_speed(rows: list[PerfRow]) -> dict[str, Efficiency]:
    """Constants per engine: pooled over all rows, then each engine's own rows with a pull to the pool.

    The SHARED constants describe the model and the hardware, not the engine (how a batch's tokens
    spread over MoE experts), so they keep the pooled value for every engine. A constant that no row
    constrains (the loss is flat over its whole range: a fold without any TTFT row cannot see the
    request overhead) takes its physical default from DEFAULTS, with the default's source."""
    by_engine: dict[str, list[PerfRow]] = {e: [r for r in rows if r.engine == e] for e in ENGINES}
    # The pooled fit scores every row with its own engine's prefill chunk.
    base = Efficiency(prefill_chunk=8192, **START)

    def pooled_loss(eff: Efficiency) -> float:
        return sum(_loss(rs, _with_chunk(rs, eff), None) for rs in by_engine.values() if rs)

    best = pooled_loss(base)
    flat = set(FITTED)
    for _ in range(PASSES):
        for name in FITTED:
            lo, hi = BOUNDS[name]
            for v in _geomspace(lo, hi, GRID):
                trial = replace(base, **{name: v})
                loss = pooled_loss(trial)
                if abs(loss - best) > 1e-9:
                    flat.discard(name)
                if loss < best - 1e-12:
                    best, base = loss, trial
            best, base = _refine(pooled_loss, base, best, name)
    base = replace(base, **{name: DEFAULTS[name][0] for name in flat if name in DEFAULTS})
    fitted = {}
    own_names = tuple(n for n in FITTED if n not in SHARED)
    for engine in ENGINES:
        prior = replace(base, prefill_chunk=PREFILL_CHUNK[engine])
        own = by_engine[engine]
        fitted[engine] = _descend(own, prior, prior, own_names) if own else prior
        # then, where the engine has rows on a class of hardware, that class's own PER_CLASS constants
        for cls in sorted({r.hw_class for r in own}) if PER_CLASS else ():
            mine = [r for r in own if r.hw_class == cls]
            fitted[f"{engine}@{cls}"] = _descend(mine, fitted[engine], fitted[engine], PER_CLASS)
    fitted["pooled"] = base
    return fitted


def pick(fitted: dict[str, Efficiency], engine: str, hw_class: str) -> Efficiency:
    """The constants a row of this engine on this class of hardware is predicted with."""
    return fitted.get(f"{engine}@{hw_class}", fitted[engine])


def fit_memory(rows: list[MemoryRow]) -> VllmMemoryConstants:
    """vLLM's start-up constants from the component sizes its logs print."""
    single = [r.non_torch_gib for r in rows if r.non_torch_gib is not None and r.gpus == 1]
    multi = [r.non_torch_gib for r in rows if r.non_torch_gib is not None and r.gpus > 1]
    non_single = statistics.median(single) if single else 0.25
    non_tp = statistics.median(multi) if multi else 2.1

    graphs = [r for r in rows if r.cudagraph_gib is not None and r.cudagraph_gib > 0]
    base, per_layer, tp_extra = _least_squares(
        [[1.0, r.dep.model.num_layers, 1.0 if r.gpus > 1 else 0.0] for r in graphs], [r.cudagraph_gib for r in graphs]
    ) if len(graphs) >= 3 else (0.3, 0.017, 0.5)

    peaks = [r for r in rows if r.torch_peak_gib is not None]
    best = (math.inf, 14.0, 0.15)
    for i in range(121):
        per_logit = 4.0 + i * 0.25
        probe = VllmMemoryConstants(per_logit, 0.0, 0, 0, 0, 0, 0)
        bare = [vllm_activation_peak_bytes(r.dep.model, r.dep.devices, _mnbt(r), _mns(r), probe) / GIB for r in peaks]
        if not bare:
            break
        intercept = statistics.median([r.torch_peak_gib - b for r, b in zip(peaks, bare)])
        sse = sum((r.torch_peak_gib - b - intercept) ** 2 for r, b in zip(peaks, bare))
        if sse < best[0] - 1e-12:
            best = (sse, per_logit, intercept)
    return VllmMemoryConstants(
        sampler_bytes_per_logit=_round(best[1]), profile_base_gib=_round(max(0.0, best[2])),
        non_torch_gib_single=_round(non_single), non_torch_gib_tp=_round(non_tp),
        cuda_graph_base_gib=_round(base), cuda_graph_per_layer_gib=_round(per_layer), cuda_graph_tp_gib=_round(tp_extra),
    )


def _mnbt(row: MemoryRow) -> int:
    from sparkserve.engines import vllm

    return row.dep.max_num_batched_tokens or vllm.defaults_for(row.dep.hardware).max_num_batched_tokens


def _mns(row: MemoryRow) -> int:
    from sparkserve.engines import vllm

    return row.dep.max_num_seqs or vllm.defaults_for(row.dep.hardware).max_num_seqs


def _least_squares(x: list[list[float]], y: list[float]) -> tuple[float, ...]:
    """Normal equations for a handful of columns (Gaussian elimination, no numpy needed)."""
    n = len(x[0])
    a = [[sum(r[i] * r[j] for r in x) for j in range(n)] + [sum(r[i] * v for r, v in zip(x, y))] for i in range(n)]
    for c in range(n):
        pivot = max(range(c, n), key=lambda k: abs(a[k][c]))
        a[c], a[pivot] = a[pivot], a[c]
        if abs(a[c][c]) < 1e-12:
            return (0.3, 0.017, 0.5)[:n]
        for k in range(n):
            if k != c:
                f = a[k][c] / a[c][c]
                a[k] = [u - f * w for u, w in zip(a[k], a[c])]
    return tuple(a[i][n] / a[i][i] for i in range(n))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def build() -> str:
    perf = load_perf()
    memory = load_memory()
    speed = fit_speed(perf)
    mem = fit_memory(memory)
    here = Path(__file__).resolve()
    doc = {
        "about": "Written by benchmarks/fit_calibration.py; do not edit by hand. Values are read by "
                 "sparkserve/plan/calibration.py; docs/accuracy.md scores them on rows they were not fitted on.",
        "script": {_rel(here): _sha256(here), _rel(here.with_name("calibration_rows.py")):
                   _sha256(here.with_name("calibration_rows.py"))},
        "inputs": {_rel(p): _sha256(p) for p in (PERF_CSV, *MEMORY_CSVS) if p.exists()},
        "method": {"loss": "sum of squared log errors, weighted (row_weight)", "ridge_to_pooled": RIDGE,
                   "grid_points": GRID, "passes": PASSES, "bounds": BOUNDS, "shared_by_all_engines": list(SHARED),
                   "defaults_where_no_row_constrains": {k: {"value": v, "source": src} for k, (v, src) in DEFAULTS.items()}},
        "engines": {
            engine: {
                "values": {**{k: _round(getattr(speed[engine], k)) for k in FITTED},
                           "prefill_chunk": PREFILL_CHUNK[engine]},
                "fitted_on": [r.id for r in perf if r.engine == engine],
                **({"by_hardware_class": {
                    key.split("@")[1]: {k: _round(getattr(eff, k)) for k in PER_CLASS}
                    for key, eff in sorted(speed.items()) if key.startswith(engine + "@")}} if PER_CLASS else {}),
            }
            for engine in ENGINES
        },
        "pooled": {"values": {k: _round(getattr(speed["pooled"], k)) for k in FITTED},
                   "fitted_on": [r.id for r in perf]},
        "settings_not_fitted": {"prefill_chunk": "the engines' default tokens per forward pass (see PREFILL_CHUNK "
                                                 "in benchmarks/fit_calibration.py for each default's source)"},
        "vllm_memory": {
            "values": {k: getattr(mem, k) for k in VllmMemoryConstants.__dataclass_fields__},
            "fitted_on": {
                "non_torch": [r.id for r in memory if r.non_torch_gib is not None],
                "cuda_graphs": [r.id for r in memory if r.cudagraph_gib is not None and r.cudagraph_gib > 0],
                "torch_peak": [r.id for r in memory if r.torch_peak_gib is not None],
            },
        },
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs from a fresh fit")
    ap.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = ap.parse_args()
    text = build()
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'identical to a fresh fit' if same else 'DIFFERS from a fresh fit'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

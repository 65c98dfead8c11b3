"""Everything a model document states about one model on one machine, as plans.

Pure: the caller resolves the model and the service sharing the machine (the default stack's
Ollama); this module chooses the vLLM settings sparkserve recommends and plans every figure the
document prints, so each one is what `sparkserve plan` gives for the same settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.models.spec import ModelSpec
from sparkserve.plan.memory import Deployment, engine_memory
from sparkserve.plan.planner import (
    ServicePlan,
    deployment,
    plan_service,
    unified_share_utilization,
)
from sparkserve.plan.quant import GGUF_ENGINES
from sparkserve.plan.settings import vllm_settings
from sparkserve.plan.speed import Workload, attention_flops, decode_bytes, matmul_peaks, peak_matmul_seconds

# One request of max-model-len should never hold the whole KV cache: keep room for this many.
MIN_FULL_LENGTH_REQUESTS = 2
DECODE_BATCHES = (1, 4, 16, 64)
PREFILL_PROMPTS = (512, 4096)
VLLM_PRECISIONS = ("bf16", "fp8", "awq")  # awq stands for every 4-bit group-128 checkpoint (GPTQ is priced alike)
GGUF_PRECISIONS = ("q4_k_m", "q8_0")
UTILIZATION_STEP = 0.01
MIN_LENGTH = 1024  # shorter than this, a max-model-len serves no real chat


@dataclass(frozen=True)
class PrefillPoint:
    """One prompt on an idle server, with the time no engine can beat."""

    plan: ServicePlan
    ceiling_s: float

    @property
    def ceiling_tps(self) -> float:
        return self.plan.workload.prompt_len / self.ceiling_s

    @property
    def ceiling_ttft_ms(self) -> float:
        return self.ceiling_s * 1000


@dataclass(frozen=True)
class KvShortfall:
    """What vLLM does just below the smallest utilisation that holds one request of max-model-len."""

    min_utilization: float
    failing: ServicePlan


@dataclass(frozen=True)
class ModelReport:
    hardware: HardwareProfile
    model: ModelSpec
    neighbour: ServicePlan | None  # the service the recommended utilisation leaves room for
    recommended: ServicePlan
    at_native_length: ServicePlan  # recommended settings, max-model-len = the model's positions
    precisions: tuple[ServicePlan, ...]  # vLLM rows, then Ollama rows
    decode: tuple[ServicePlan, ...]  # batch 1 first
    prefill: tuple[PrefillPoint, ...]
    shortfall: KvShortfall | None
    alone: ServicePlan | None = None  # the recommendation with the machine to itself (`plan -m`)
    loaded: ServicePlan | None = None  # recommended settings admitting every curve level, with its curve

    @property
    def utilization(self) -> float:
        return vllm_settings(self.recommended.memory.settings).gpu_memory_utilization

    @property
    def max_num_seqs(self) -> int:
        return vllm_settings(self.recommended.memory.settings).max_num_seqs


def vllm_precisions(model: ModelSpec, hw: HardwareProfile) -> tuple[str, ...]:
    """Weight formats worth comparing: a pre-quantised checkpoint only in its own; NVFP4 only where it is native."""
    if model.checkpoint_quant:
        return (model.checkpoint_quant,)
    return VLLM_PRECISIONS + (("nvfp4",) if hw.native_nvfp4 else ())


def gguf_precisions(model: ModelSpec) -> tuple[str, ...]:
    return ("mxfp4",) if model.checkpoint_quant == "mxfp4" else GGUF_PRECISIONS


def choose_quant(model: ModelSpec, hw: HardwareProfile, fits: dict[str, bool]) -> str:
    """The checkpoint's own format; else FP8 where it is native and fits (half the bytes of BF16,
    and decode is memory-bound), else 4-bit AWQ: the rule `sparkserve init` follows."""
    if model.checkpoint_quant:
        return model.checkpoint_quant
    return "fp8" if hw.native_fp8 and fits.get("fp8", False) else "awq"


def vllm_plan(
    hw: HardwareProfile, model: ModelSpec, quant: str, work: Workload | None = None, **settings: Any
) -> ServicePlan:
    return plan_service(deployment(hw, model, quant, "vllm", **settings), work or Workload())


def build_report(hw: HardwareProfile, model: ModelSpec, neighbour: ServicePlan | None) -> ModelReport:
    """The recommendation (plan/recommend.py) beside the neighbour, as `sparkserve init` writes it, and
    alone on the machine, as `sparkserve plan -m` prints it; every other figure at its settings."""
    from sparkserve.engines.vllm import DEFAULT_GPU_MEMORY_UTILIZATION, NAME
    from sparkserve.plan.recommend import ALONE, Setting, recommend

    others = neighbour.memory.total_gib if neighbour else 0.0
    util = min(DEFAULT_GPU_MEMORY_UTILIZATION, unified_share_utilization(hw, others))
    native = model.max_position_embeddings

    def at(quant: str, length: int) -> ServicePlan:
        return vllm_plan(hw, model, quant, gpu_memory_utilization=util, max_model_len=length)

    fits = {
        q: at(q, native).memory.kv_tokens >= MIN_FULL_LENGTH_REQUESTS * MIN_LENGTH for q in vllm_precisions(model, hw)
    }
    quant = choose_quant(model, hw, fits)
    setting = Setting(others, (neighbour.name,)) if neighbour else ALONE
    rec = recommend(hw, model, quant, NAME, Workload(), setting)
    recommended = rec.plan
    chosen = vllm_settings(recommended.memory.settings)
    settings: dict[str, Any] = dict(
        gpu_memory_utilization=chosen.gpu_memory_utilization,
        max_model_len=chosen.max_model_len,
        max_num_seqs=chosen.max_num_seqs,
    )
    served, quant = recommended.deployment.model, recommended.deployment.quant.id
    length, seqs = chosen.max_model_len, chosen.max_num_seqs

    precisions = tuple(vllm_plan(hw, model, q, **settings) for q in vllm_precisions(model, hw)) + tuple(
        plan_service(deployment(hw, model, q, "ollama", max_model_len=length), Workload())
        for q in gguf_precisions(model)
    )
    decode = tuple(vllm_plan(hw, served, quant, Workload(batch=b), **settings) for b in DECODE_BATCHES if b <= seqs)
    prompts = [vllm_plan(hw, served, quant, Workload(prompt_len=p), **settings) for p in PREFILL_PROMPTS]
    prefill = tuple(
        PrefillPoint(plan, prefill_ceiling_seconds(plan.deployment, plan.workload.prompt_len,
                                                   plan.perf.efficiency.expert_spread))
        for plan in prompts
    )
    return ModelReport(
        hardware=hw,
        model=model,
        neighbour=neighbour,
        recommended=recommended,
        at_native_length=vllm_plan(hw, served, quant, **dict(settings, max_model_len=native)),
        precisions=precisions,
        decode=decode,
        prefill=prefill,
        shortfall=kv_shortfall(recommended) if recommended.fits else None,
        alone=recommend(hw, model, quant, NAME, Workload(), ALONE).plan if neighbour else None,
        loaded=_loaded(hw, served, quant, settings),
    )


def _loaded(hw: HardwareProfile, model: ModelSpec, quant: str, settings: dict[str, Any]) -> ServicePlan:
    """The recommended settings with max-num-seqs raised to the curve's top level, and the curve."""
    from sparkserve.plan.curve import DEFAULT_LEVELS, concurrency_curve

    plan = vllm_plan(hw, model, quant, **dict(settings, max_num_seqs=max(DEFAULT_LEVELS)))
    if plan.fits:
        plan.curve = concurrency_curve(plan.deployment, plan.memory, plan.workload, DEFAULT_LEVELS)
    return plan


def kv_shortfall(plan: ServicePlan) -> KvShortfall | None:
    """Lower the utilisation step by step until one request of max-model-len no longer fits."""
    dep = plan.deployment
    steps = round(vllm_settings(plan.memory.settings).gpu_memory_utilization / UTILIZATION_STEP)
    for step in range(steps - 1, 0, -1):
        util = step * UTILIZATION_STEP
        lower = dataclasses.replace(dep, gpu_memory_utilization=round(util, 2))
        mem = engine_memory(lower)
        if not mem.fits:
            if mem.kv_tokens == 0:
                return None
            return KvShortfall(
                min_utilization=round(util + UTILIZATION_STEP, 2), failing=plan_service(lower, plan.workload)
            )
    return None


def prefill_ceiling_seconds(dep: Deployment, prompt_len: int, spread: float = 1.0) -> float:
    """One prompt at 100 % of spec compute and bandwidth with no engine overhead: its matmuls and causal
    attention at the speed plan's peaks, never faster than streaming the weights once."""
    hw, model = dep.hardware, dep.model
    devices = 1 if dep.engine in GGUF_ENGINES else dep.devices  # llama.cpp splits layers, it does not shard them
    dense_peak, experts_peak, attention_peak = matmul_peaks(dep)
    matmuls = peak_matmul_seconds(model, prompt_len, dense_peak, experts_peak)
    attention = attention_flops(model, prompt_len, prompt_len, causal=True) / attention_peak
    # the experts a prompt's tokens route to, spread as the plan's (tokens of one prompt share experts)
    streamed = decode_bytes(dep, prompt_len, 0, spread) / (hw.bandwidth_gbs * 1e9 * devices)
    return max(matmuls + attention, streamed)

"""A plan for one service, or for a stack sharing one machine: memory, speed, arguments, warnings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sparkserve.errors import UserError, unknown
from sparkserve.hardware.profile import HardwareProfile
from sparkserve.models.spec import ModelSpec
from sparkserve.plan.memory import GIB, Deployment, MemoryPlan, engine_memory
from sparkserve.plan.quant import check_engine_format, hardware_warnings, weight_format
from sparkserve.plan.speed import SpeedPlan, Workload, speed

if TYPE_CHECKING:
    from sparkserve.plan.curve import CurvePoint
    from sparkserve.plan.recommend import Recommendation


@dataclass
class ServicePlan:
    name: str
    deployment: Deployment
    workload: Workload
    memory: MemoryPlan
    perf: SpeedPlan
    recommended_args: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recommendation: Recommendation | None = None  # set by plan/recommend.py: what to run instead, and why
    curve: list[CurvePoint] = field(default_factory=list)  # set by `plan --concurrency` and the model pages

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def to_dict(self) -> dict[str, Any]:
        dep, mem, perf = self.deployment, self.memory, self.perf
        return {
            "name": self.name,
            "hardware": dep.hardware.id,
            "model": dep.model.id,
            "engine": dep.engine,
            "quant": dep.quant.id,
            "gpus": dep.gpus,
            "nodes": dep.nodes,
            "workload": asdict(self.workload),
            "memory": {
                "weights_gib": round(mem.weights_gib, 2),
                "activation_gib": round(mem.activation_gib, 2),
                "non_torch_gib": round(mem.non_torch_gib, 2),
                "cuda_graph_gib": round(mem.cuda_graph_gib, 2),
                "kv_cache_gib": round(mem.kv_cache_gib, 2),
                "kv_tokens": mem.kv_tokens,
                "kv_bytes_per_token": round(mem.kv_bytes_per_token),
                "max_model_len": mem.max_model_len,
                "max_concurrency": round(mem.max_concurrency, 2),
                "budget_gib": round(mem.budget_gib, 2),
                "total_gib": round(mem.total_gib, 2),
                "fits": mem.fits,
                "reasons": mem.reasons,
                "warnings": self.warnings,
                "settings": mem.settings.to_dict(),
            },
            "perf": {
                "decode_tps": round(perf.decode_tps, 2),
                "aggregate_tps": round(perf.aggregate_tps, 2),
                "prefill_tps": round(perf.prefill_tps, 1),
                "ttft_ms": round(perf.ttft_ms, 1),
                "itl_ms": round(perf.itl_ms, 2),
                "output_tps": round(perf.output_tps, 2),
                "roofline_decode_tps": round(perf.roofline_decode_tps, 2),
                "decode_step_ms": round(perf.decode_step_ms, 2),
                "bytes_per_step_gb": round(perf.bytes_per_step_gb, 3),
                "bound": perf.bound,
                **({"curve": [p.to_dict() for p in self.curve]} if self.curve else {}),
            },
            "recommended_args": self.recommended_args,
            **({"recommendation": self.recommendation.to_dict()} if self.recommendation else {}),
        }


def check_engine(engine: str) -> str:
    """The registered engine's name for `engine` (aliases accepted); unknown names are a UserError."""
    from sparkserve.engines import get_engine

    return get_engine(engine).name


def check_kv_cache_dtype(engine: str, kv_dtype: str) -> None:
    """Each engine spells its KV-cache types its own way; reject what it would refuse."""
    from sparkserve.engines import get_engine

    accepted = get_engine(engine).kv_cache_dtypes
    if kv_dtype not in accepted:
        raise unknown(f"KV-cache dtype for {engine}", kv_dtype, accepted, hint="expected one of " + ", ".join(accepted))


def deployment(
    hardware: HardwareProfile,
    model: ModelSpec,
    quant: str,
    engine: str,
    *,
    gpus: int = 1,
    nodes: int = 1,
    **settings: Any,
) -> Deployment:
    """Validate a combination the user asked for; raise UserError for what cannot be planned at all."""
    engine = check_engine(engine)
    fmt = weight_format(quant)
    check_engine_format(engine, fmt)
    if fmt.id == "mxfp4" and model.checkpoint_quant != "mxfp4":
        # Neither vLLM nor llama.cpp makes MXFP4 weights on load: they exist only as published checkpoints.
        raise UserError(f"{model.id} has no MXFP4 checkpoint (MXFP4 weights exist only as published, e.g. "
                        "openai/gpt-oss-20b): use -q fp8, nvfp4 or awq, or a GGUF type such as q4_k_m with ollama")
    for flag, value in (("--gpus", gpus), ("--nodes", nodes)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if settings.get("kv_cache_dtype") in (None, "auto"):
        from sparkserve.engines import get_engine

        settings["kv_cache_dtype"] = get_engine(engine).default_kv_cache_dtype(model)
    check_kv_cache_dtype(engine, settings["kv_cache_dtype"])
    if gpus > hardware.max_gpus:
        raise UserError(f"{hardware.name} hosts hold at most {hardware.max_gpus} GPU(s); use --nodes for more hosts")
    util = settings.get("gpu_memory_utilization")
    if util is not None and not 0.05 <= util <= 1.0:
        raise UserError(f"--gpu-memory-utilization must be between 0.05 and 1.0, got {util}")
    return Deployment(hardware=hardware, model=model, quant=fmt, engine=engine, gpus=gpus, nodes=nodes, **settings)


def plan_service(dep: Deployment, work: Workload, name: str = "") -> ServicePlan:
    from sparkserve.engines import get_engine
    from sparkserve.plan.curve import admitted

    mem = engine_memory(dep)
    warnings = list(mem.warnings) + hardware_warnings(dep.quant, dep.hardware)
    cap = admitted(mem, work)
    if mem.fits and work.batch > cap.requests:
        held = (f"the KV cache holds {cap.kv_requests} requests of {work.prompt_len + work.output_len:,} tokens"
                if cap.by == "kv_cache" else f"{cap.by.replace('_', '-')} is {cap.seq_limit}")
        warnings.append(f"--batch {work.batch} is more than the engine runs together ({held}): planned at "
                        f"batch {cap.requests}, the rest would queue; `plan --concurrency` shows the waits")
        work = replace(work, batch=cap.requests)
    perf = speed(dep, work)
    plan = ServicePlan(name=name or dep.model.id, deployment=dep, workload=work, memory=mem, perf=perf,
                       warnings=warnings)
    engine = get_engine(dep.engine)
    plan.recommended_args = engine.recommended_args(plan)
    warnings.extend(engine.unified_memory_warnings(dep, mem))
    if not mem.fits:
        warnings.extend(mem.reasons)
    return plan


@dataclass
class StackPlan:
    """Several services on one machine; on unified memory they and the OS share one pool."""

    hardware: HardwareProfile
    services: list[ServicePlan]

    @property
    def used_gib(self) -> float:
        """What the services hold on one device (the pool is one device's): a tensor-parallel service
        holds its total spread evenly over its devices."""
        return sum(s.memory.total_gib / max(1, s.memory.devices) for s in self.services)

    @property
    def pool_gib(self) -> float:
        return self.hardware.gpu_memory_gib

    @property
    def left_gib(self) -> float:
        return self.pool_gib - self.used_gib - (self.hardware.os_reserve_gib if self.hardware.unified else 0.0)

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.services) and self.left_gib >= 0

    def warnings(self) -> list[str]:
        if self.left_gib >= 0:
            return []
        hw = self.hardware
        need = f"{self.used_gib:.1f} GiB" + (f" plus {hw.os_reserve_gib:.0f} GiB for the OS" if hw.unified else "")
        who = "the OS and the services" if hw.unified else "the services"
        return [
            f"the services need {need} but {hw.name} has {self.pool_gib:.1f} GiB: {who} would run out of memory; "
            "lower vLLM's --gpu-memory-utilization or pick smaller models"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.id,
            "unified": self.hardware.unified,
            "pool_gib": round(self.pool_gib, 2),
            "used_gib": round(self.used_gib, 2),
            "os_reserve_gib": self.hardware.os_reserve_gib if self.hardware.unified else 0.0,
            "left_gib": round(self.left_gib, 2),
            "fits": self.fits,
            "warnings": self.warnings(),
        }


def unified_share_utilization(hw: HardwareProfile, others_gib: float) -> float:
    """The gpu-memory-utilization that leaves room for the other services on the same GPU (and,
    on unified memory, for the OS)."""
    import math

    free = hw.gpu_memory_gib - others_gib - (hw.os_reserve_gib if hw.unified else 0.0)
    return max(0.05, math.floor(free / hw.gpu_memory_gib * 100) / 100)


__all__ = ["ServicePlan", "StackPlan", "deployment", "plan_service", "unified_share_utilization", "GIB"]

"""A plan for one service, or for a stack sharing one machine: memory, speed, arguments, warnings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sparkserve.errors import UserError, unknown
from sparkserve.hardware.profile import HardwareProfile
from sparkserve.models.spec import ModelSpec
from sparkserve.plan.calibration import ENGINES
from sparkserve.plan.memory import GIB, Deployment, MemoryPlan, engine_memory
from sparkserve.plan.quant import GGUF_ENGINES, check_engine_format, hardware_warnings, weight_format
from sparkserve.plan.settings import gguf_settings, vllm_settings
from sparkserve.plan.speed import SpeedPlan, Workload, speed


@dataclass
class ServicePlan:
    name: str
    deployment: Deployment
    workload: Workload
    memory: MemoryPlan
    perf: SpeedPlan
    recommended_args: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def to_dict(self) -> dict:
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
                "roofline_decode_tps": round(perf.roofline_decode_tps, 2),
                "decode_step_ms": round(perf.decode_step_ms, 2),
                "bytes_per_step_gb": round(perf.bytes_per_step_gb, 3),
                "bound": perf.bound,
            },
            "recommended_args": self.recommended_args,
        }


def check_engine(engine: str) -> str:
    key = engine.strip().lower()
    key = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "tensorrt-llm": "trtllm", "trt-llm": "trtllm"}.get(key, key)
    if key not in ENGINES:
        raise unknown("engine", engine, ENGINES, hint="expected one of " + ", ".join(ENGINES))
    return key


def check_kv_cache_dtype(engine: str, kv_dtype: str) -> None:
    """Each engine spells its KV-cache types its own way; reject what it would refuse."""
    from sparkserve.engines import ollama, vllm

    accepted = ollama.KV_CACHE_TYPES if engine in GGUF_ENGINES else vllm.KV_CACHE_DTYPES
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
    **settings,
) -> Deployment:
    """Validate a combination the user asked for; raise UserError for what cannot be planned at all."""
    engine = check_engine(engine)
    fmt = weight_format(quant)
    check_engine_format(engine, fmt)
    for flag, value in (("--gpus", gpus), ("--nodes", nodes)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    check_kv_cache_dtype(engine, settings.get("kv_cache_dtype", "auto"))
    if gpus > hardware.max_gpus:
        raise UserError(f"{hardware.name} hosts hold at most {hardware.max_gpus} GPU(s); use --nodes for more hosts")
    util = settings.get("gpu_memory_utilization")
    if util is not None and not 0.05 <= util <= 1.0:
        raise UserError(f"--gpu-memory-utilization must be between 0.05 and 1.0, got {util}")
    return Deployment(hardware=hardware, model=model, quant=fmt, engine=engine, gpus=gpus, nodes=nodes, **settings)


def plan_service(dep: Deployment, work: Workload, name: str = "") -> ServicePlan:
    mem = engine_memory(dep)
    perf = speed(dep, work)
    warnings = list(mem.warnings) + hardware_warnings(dep.quant, dep.hardware)
    plan = ServicePlan(name=name or dep.model.id, deployment=dep, workload=work, memory=mem, perf=perf, warnings=warnings)
    plan.recommended_args = _recommended_args(plan)
    if dep.hardware.unified and dep.engine not in GGUF_ENGINES:
        util = vllm_settings(mem.settings).gpu_memory_utilization
        left = dep.hardware.gpu_memory_gib * (1 - util)
        if left < dep.hardware.os_reserve_gib:
            warnings.append(
                f"unified memory: vLLM takes {util:.2f} x {dep.hardware.gpu_memory_gib:.1f} GiB and leaves "
                f"{left:.1f} GiB for the OS (needs about {dep.hardware.os_reserve_gib:.0f} GiB); the host may freeze. "
                f"Use --gpu-memory-utilization {_util_leaving(dep.hardware, dep.hardware.os_reserve_gib):.2f}"
            )
    if dep.hardware.unified and dep.engine in GGUF_ENGINES:
        left = dep.hardware.gpu_memory_gib - mem.total_gib
        if left < dep.hardware.os_reserve_gib:
            warnings.append(
                f"unified memory: {dep.engine} needs {mem.total_gib:.1f} GiB and leaves {left:.1f} GiB for the OS "
                f"(needs about {dep.hardware.os_reserve_gib:.0f} GiB); the host may freeze"
            )
    if not mem.fits:
        warnings.extend(mem.reasons)
    return plan


def _util_leaving(hw: HardwareProfile, reserve_gib: float) -> float:
    import math

    return math.floor((hw.gpu_memory_gib - reserve_gib) / hw.gpu_memory_gib * 100) / 100


def _recommended_args(plan: ServicePlan) -> list[str]:
    dep, mem = plan.deployment, plan.memory
    if dep.engine == "vllm":
        from sparkserve.engines import vllm

        return vllm.recommended_args(
            vllm_settings(mem.settings),
            nodes=dep.nodes,
            model_id=dep.model.id,
            quant=dep.quant.id,
            checkpoint_quant=dep.model.checkpoint_quant,
            max_model_len=mem.max_model_len,
        )
    if dep.engine == "ollama":
        from sparkserve.engines import ollama

        return [f"{k}={v}" for k, v in ollama.recommended_env(gguf_settings(mem.settings)).items()]
    return []


@dataclass
class StackPlan:
    """Several services on one machine; on unified memory they and the OS share one pool."""

    hardware: HardwareProfile
    services: list[ServicePlan]

    @property
    def used_gib(self) -> float:
        return sum(s.memory.total_gib for s in self.services)

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

    def to_dict(self) -> dict:
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

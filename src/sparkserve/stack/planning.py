"""Turn service declarations into plans: resolve names, pick defaults, share unified memory."""

from __future__ import annotations

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import ServicePlan, StackPlan, deployment, plan_service, unified_share_utilization
from sparkserve.plan.quant import GGUF_ENGINES
from sparkserve.plan.speed import Workload
from sparkserve.stack.defaults import DEFAULT_SERVICES, ServiceDefaults


def default_quant(engine: str, resolved) -> str:
    """The quantisation a user gets when they name none: the checkpoint's own, or Ollama's default tag."""
    if resolved.default_quant:
        return resolved.default_quant
    if engine in GGUF_ENGINES:
        return "mxfp4" if resolved.spec.checkpoint_quant == "mxfp4" else "q4_k_m"
    return resolved.spec.checkpoint_quant or "bf16"


def default_engine(resolved) -> str:
    return "ollama" if resolved.ollama_tag else "vllm"


def plan_one(hw: HardwareProfile, model: str, *, engine: str | None, quant: str | None, work: Workload,
             name: str = "", **settings) -> ServicePlan:
    from sparkserve.models.catalog import resolve_model

    resolved = resolve_model(model)
    engine = engine or default_engine(resolved)
    dep = deployment(hw, resolved.spec, quant or default_quant(engine, resolved), engine, **settings)
    return plan_service(dep, work, name=name)


def plan_services(hw: HardwareProfile, services: tuple[ServiceDefaults, ...] | list[ServiceDefaults],
                  work: Workload) -> StackPlan:
    """Plan GGUF services first: on unified memory vLLM's utilisation is sized to leave them room."""
    ordered = sorted(services, key=lambda s: s.engine not in GGUF_ENGINES)
    plans: list[ServicePlan] = []
    for svc in ordered:
        settings = dict(svc.settings)
        if svc.engine not in GGUF_ENGINES and "gpu_memory_utilization" not in settings:
            others = sum(p.memory.total_gib for p in plans)
            from sparkserve.engines.vllm import DEFAULT_GPU_MEMORY_UTILIZATION

            settings["gpu_memory_utilization"] = min(DEFAULT_GPU_MEMORY_UTILIZATION, unified_share_utilization(hw, others))
        plans.append(plan_one(hw, svc.model, engine=svc.engine, quant=svc.quant, work=work, name=svc.name, **settings))
    order = {s.name: i for i, s in enumerate(services)}
    plans.sort(key=lambda p: order[p.name])
    return StackPlan(hardware=hw, services=plans)


def plan_default_stack(hw: HardwareProfile, work: Workload) -> StackPlan:
    return plan_services(hw, DEFAULT_SERVICES, work)

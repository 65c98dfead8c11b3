"""Turn service declarations into plans: resolve names, pick defaults, share unified memory."""

from __future__ import annotations

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import ServicePlan, StackPlan, deployment, plan_service
from sparkserve.plan.speed import Workload
from sparkserve.stack.defaults import DEFAULT_SERVICES, ServiceDefaults


def default_quant(engine: str, resolved) -> str:
    """The quantisation a user gets when they name none: the checkpoint's own, or Ollama's default tag."""
    from sparkserve.engines import get_engine

    if resolved.default_quant:
        return resolved.default_quant
    return get_engine(engine).default_quant(resolved.spec.checkpoint_quant)


def default_engine(resolved) -> str:
    """An Ollama tag is served by Ollama, anything else by vLLM."""
    from sparkserve.engines import ollama, vllm

    return ollama.NAME if resolved.ollama_tag else vllm.NAME


def plan_one(hw: HardwareProfile, model: str, *, engine: str | None, quant: str | None, work: Workload,
             name: str = "", **settings) -> ServicePlan:
    from sparkserve.models.catalog import resolve_model

    resolved = resolve_model(model)
    engine = engine or default_engine(resolved)
    dep = deployment(hw, resolved.spec, quant or default_quant(engine, resolved), engine, **settings)
    return plan_service(dep, work, name=name)


def plan_services(hw: HardwareProfile, services: tuple[ServiceDefaults, ...] | list[ServiceDefaults],
                  work: Workload) -> StackPlan:
    """Plan the engines that take what they need first; those that take a share of memory at start
    (vLLM's utilisation) are then sized to leave them room."""
    from sparkserve.engines import get_engine

    ordered = sorted(services, key=lambda s: get_engine(s.engine).takes_memory_share)
    plans: list[ServicePlan] = []
    for svc in ordered:
        settings = dict(svc.settings)
        others = sum(p.memory.total_gib for p in plans)
        settings.update(get_engine(svc.engine).share_settings(hw, others, settings))
        plans.append(plan_one(hw, svc.model, engine=svc.engine, quant=svc.quant, work=work, name=svc.name, **settings))
    order = {s.name: i for i, s in enumerate(services)}
    plans.sort(key=lambda p: order[p.name])
    return StackPlan(hardware=hw, services=plans)


def plan_default_stack(hw: HardwareProfile, work: Workload) -> StackPlan:
    return plan_services(hw, DEFAULT_SERVICES, work)

"""Turn service declarations into plans: resolve names, pick defaults, share unified memory."""

from __future__ import annotations

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import ServicePlan, StackPlan
from sparkserve.plan.recommend import ALONE, Recommendation, Setting, recommend
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


def recommend_one(hw: HardwareProfile, model: str, *, engine: str | None, quant: str | None, work: Workload,
                  name: str = "", setting: Setting = ALONE, hf_home: str | None = None, **settings) -> Recommendation:
    """The one recommendation for a service (plan/recommend.py), from the user's words."""
    from sparkserve.models.catalog import resolve_model

    resolved = resolve_model(model, hf_home=hf_home)
    engine = engine or default_engine(resolved)
    gpus, nodes = settings.pop("gpus", None) or 1, settings.pop("nodes", None) or 1
    return recommend(hw, resolved.spec, quant or default_quant(engine, resolved), engine, work, setting,
                     gpus=gpus, nodes=nodes, name=name, **settings)


def plan_one(hw: HardwareProfile, model: str, *, engine: str | None, quant: str | None, work: Workload,
             name: str = "", setting: Setting = ALONE, hf_home: str | None = None, **settings) -> ServicePlan:
    """The plan of what was asked (unset settings chosen by the recommendation), carrying the recommendation."""
    return recommend_one(hw, model, engine=engine, quant=quant, work=work, name=name, setting=setting,
                         hf_home=hf_home, **settings).requested


def plan_services(hw: HardwareProfile, services: tuple[ServiceDefaults, ...] | list[ServiceDefaults],
                  work: Workload, hf_home: str | None = None) -> StackPlan:
    """Plan the engines that take what they need first; those that take a share of memory at start
    (vLLM's utilisation) are then sized beside them. `hf_home`: the stack's HF cache, searched for models."""
    from sparkserve.engines import get_engine

    ordered = sorted(services, key=lambda s: get_engine(s.engine).takes_memory_share)
    plans: list[ServicePlan] = []
    for svc in ordered:
        settings = dict(svc.settings)
        others = sum(p.memory.total_gib for p in plans)
        setting = Setting(others, tuple(p.name for p in plans)) if plans else ALONE
        engine = get_engine(svc.engine)
        if engine.sizing_defaults(hw) is None:
            settings.update(engine.share_settings(hw, others, settings))
        plans.append(plan_one(hw, svc.model, engine=svc.engine, quant=svc.quant, work=work, name=svc.name,
                              setting=setting, hf_home=hf_home, **settings))
    order = {s.name: i for i, s in enumerate(services)}
    plans.sort(key=lambda p: order[p.name])
    return StackPlan(hardware=hw, services=plans)


def plan_default_stack(hw: HardwareProfile, work: Workload) -> StackPlan:
    return plan_services(hw, DEFAULT_SERVICES, work)

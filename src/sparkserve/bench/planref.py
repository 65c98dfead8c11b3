"""Hold a measurement against the plan: predicted speed and the physical ceiling beside it.

A plan needs a hardware profile and a model the planner can read. The profile comes from
`--hardware ID` (or `auto`), else from the stack for a `--service` target; the model from the
stack, else from the directory vLLM loaded it from (`root` in /v1/models). Without both the
result says "no plan" and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkserve.bench.target import Target
from sparkserve.errors import UserError


@dataclass(frozen=True)
class PlanBasis:
    """What the planner was asked, or why nothing could be asked."""

    hardware: str | None
    model: str | None
    engine: str | None
    quant: str | None
    reason: str | None = None  # set when there is no plan


def plan_basis(target: Target, hardware: str | None) -> PlanBasis:
    from sparkserve.engines import find_engine, vllm

    wanted = hardware or (target.stack_hardware if target.service else None)
    # An OpenAI-compatible server that did not say which engine it is gets vLLM's plan, said in the result.
    engine = target.engine if find_engine(target.engine) is not None else vllm.NAME
    model = target.stack_model
    if model is None and target.model_root:
        model = target.model_root
    if model is None and target.is_ollama:
        model = target.model
    if not wanted:
        return PlanBasis(None, model, engine, target.stack_quant,
                         reason="no hardware profile: pass --hardware ID (see 'sparkserve hw') to compare with a plan")
    if model is None:
        return PlanBasis(wanted, None, engine, target.stack_quant,
                         reason=f"the planner cannot read model {target.model!r}; benchmark a stack service instead")
    return PlanBasis(wanted, model, engine, target.stack_quant)


def compare_with_plan(basis: PlanBasis, *, batch: int, prompt_len: int, output_len: int,
                      measured: dict) -> dict:
    """The `PlanComparison` fields for one load point's summary (`measured`)."""
    if basis.reason:
        return {"available": False, "reason": basis.reason}
    try:
        from sparkserve.hardware.catalog import resolve_profile as resolve_hardware
        from sparkserve.plan.speed import Workload
        from sparkserve.stack.planning import plan_one

        hw = resolve_hardware(basis.hardware)
        work = Workload(batch=max(1, batch), prompt_len=prompt_len, output_len=output_len)
        plan = plan_one(hw, str(basis.model), engine=basis.engine, quant=basis.quant, work=work)
    except UserError as exc:
        return {"available": False, "reason": f"no plan: {exc}", "hardware": basis.hardware, "model": basis.model}
    perf = plan.perf
    decode = measured.get("decode_tps")
    ttft = (measured.get("ttft_ms") or {}).get("mean")
    out = {
        "available": True,
        "hardware": hw.id,
        "model": plan.deployment.model.id,
        "engine": plan.deployment.engine,
        "quant": plan.deployment.quant.id,
        "batch": max(1, batch),
        "predicted_decode_tps": perf.decode_tps,
        "ceiling_decode_tps": perf.roofline_decode_tps,
        "predicted_ttft_ms": perf.ttft_ms,
        "predicted_output_tps": perf.aggregate_tps,
        "measured_decode_tps": decode,
        "measured_ttft_ms": ttft,
        "measured_output_tps": measured.get("output_tps"),
        "decode_pct_of_ceiling": _pct_of(decode, perf.roofline_decode_tps),
        "decode_pct_of_plan": _pct_of(decode, perf.decode_tps),
    }
    out["line"] = plan_line(out)
    return out


def plan_line(cmp: dict) -> str:
    """'decode 6.1 tok/s = 74 % of the 8.3 tok/s ceiling (plan 6.3 tok/s, dgx-spark)' or 'no plan: why'."""
    if not cmp.get("available"):
        return f"no plan ({cmp.get('reason', 'unknown')})" if not str(cmp.get("reason", "")).startswith("no plan") \
            else str(cmp["reason"])
    decode = cmp.get("measured_decode_tps")
    if decode is None:
        return (f"no decode measured (plan {cmp['predicted_decode_tps']:.1f} tok/s, "
                f"ceiling {cmp['ceiling_decode_tps']:.1f} tok/s)")
    pct = cmp["decode_pct_of_ceiling"]
    return (f"decode {_fmt(decode)} tok/s = {_pct(pct)} % of the "
            f"{_fmt(cmp['ceiling_decode_tps'])} tok/s ceiling (plan {_fmt(cmp['predicted_decode_tps'])} tok/s, "
            f"{cmp['hardware']}, batch {cmp['batch']})")


def _pct_of(value: float | None, whole: float) -> float | None:
    return 100.0 * value / whole if value and whole else None


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _pct(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"

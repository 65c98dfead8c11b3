"""The plan's view of each configuration, before anything starts: does it fit, can it meet the SLO
at concurrency 1, at which load does the SLO stop holding, and how much goodput would that give.

The predicted curve comes from the planner at each load level (Workload(batch=c)). At load c a
new request's prefill joins a batch that is decoding: its TTFT is the idle prefill plus one decode
step; its inter-token latency is the decode step at batch c; the KV cache must hold c requests of
the workload, or requests wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparkserve.bench.slo import Slo
from sparkserve.errors import UserError
from sparkserve.tune.space import Candidate

if TYPE_CHECKING:
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.plan.planner import ServicePlan
    from sparkserve.stack.load import Stack


@dataclass(frozen=True)
class WorkloadShape:
    """What each request looks like (the bench workload's numbers)."""

    kind: str = "random"
    prompt_len: int = 256
    output_len: int = 128
    turns: int = 1

    @property
    def request_len(self) -> int:
        """Tokens the longest request holds in the KV cache (a conversation's last turn), as bench counts them."""
        from sparkserve.bench.workload import WorkloadSpec, context_needed

        return context_needed(WorkloadSpec(kind=self.kind, prompt_len=self.prompt_len, output_len=self.output_len,
                                           turns=self.turns))


def planned_settings(plan: ServicePlan) -> dict:
    """The plan's engine settings by name (tune's space uses the stack's `args` names)."""
    return plan.memory.settings.to_dict()


class Planner:
    """Plans the stack's service with a configuration's args, at a load level."""

    def __init__(self, stack: Stack, name: str, hw: HardwareProfile, shape: WorkloadShape, engine):
        self.stack, self.name, self.hw, self.shape, self.engine = stack, name, hw, shape, engine
        self._cache: dict[tuple[str, int], ServicePlan] = {}

    def stack_with(self, args: dict) -> Stack:
        """The stack file as it would read with this configuration written into the service."""
        from sparkserve.stack.load import Stack

        svc = self.stack.services[self.name]
        stack_args, env = self.engine.tune_overrides(args)
        changed = svc.model_copy(update={"args": {**svc.args, **stack_args}, "env": {**svc.env, **env}})
        spec = self.stack.spec.model_copy(update={"services": {**self.stack.services, self.name: changed}})
        return Stack(path=self.stack.path, spec=spec)

    def plan(self, args: dict, batch: int = 1) -> ServicePlan:
        from sparkserve.plan.speed import Workload
        from sparkserve.stack.stackplan import plan_stack
        from sparkserve.tune.space import config_id

        key = (config_id(args), batch)
        if key not in self._cache:
            work = Workload(batch=batch, prompt_len=self.shape.prompt_len, output_len=self.shape.output_len)
            stack_plan = plan_stack(self.stack_with(args), self.hw, work)
            self._cache[key] = next(p for p in stack_plan.services if p.name == self.name)
        return self._cache[key]

    def others_gib(self) -> float:
        """Memory the stack's other services take (they share the machine while tune runs)."""
        from sparkserve.plan.speed import Workload
        from sparkserve.stack.stackplan import plan_stack

        stack_plan = plan_stack(self.stack, self.hw, Workload())
        return sum(p.memory.total_gib for p in stack_plan.services if p.name != self.name)


@dataclass(frozen=True)
class Point:
    """The plan at one load level."""

    load: int
    ttft_ms: float
    itl_ms: float
    e2e_ms: float
    per_request_tps: float
    aggregate_tps: float
    goodput_rps: float
    meets_slo: bool
    why: str = ""  # which objective fails, when one does

    def to_dict(self) -> dict:
        return {"load": self.load, "ttft_ms": round(self.ttft_ms, 2), "itl_ms": round(self.itl_ms, 3),
                "e2e_ms": round(self.e2e_ms, 1), "per_request_tps": round(self.per_request_tps, 2),
                "aggregate_tps": round(self.aggregate_tps, 1), "goodput_rps": round(self.goodput_rps, 3),
                "meets_slo": self.meets_slo, **({"why": self.why} if self.why else {})}


@dataclass
class Prediction:
    """A configuration as the plan sees it: skipped (with the reason) or a curve and a max load."""

    candidate: Candidate
    cap: int  # the highest load worth sending (the engine's concurrency setting)
    skip: str | None = None
    curve: list[Point] = field(default_factory=list)
    max_load: int | None = None  # highest level of the curve meeting the SLO
    kv_requests: int | None = None  # requests of this workload the KV cache holds at once
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> Point | None:
        return next((p for p in self.curve if p.load == self.max_load), None)

    @property
    def promise(self) -> tuple[float, float, int]:
        """Order of the search: predicted goodput at the max load, then output tok/s, then the larger cap
        (whose measurement tells the most about the others)."""
        best = self.best
        return (best.goodput_rps, best.aggregate_tps, self.cap) if best else (0.0, 0.0, self.cap)

    def to_dict(self) -> dict:
        best = self.best
        return {"max_load": self.max_load, "kv_requests": self.kv_requests,
                "at_max_load": best.to_dict() if best else None, "curve": [p.to_dict() for p in self.curve],
                **({"warnings": self.warnings} if self.warnings else {})}


def levels(cap: int) -> list[int]:
    """Load levels of the predicted curve: powers of two up to the cap, and the cap."""
    out, c = [], 1
    while c < cap:
        out.append(c)
        c *= 2
    return [*out, cap]


def _value(slo: Slo, point: dict) -> float:
    by_metric = {"ttft": point["ttft_ms"], "tpot": point["itl_ms"], "itl": point["itl_ms"], "e2e": point["e2e_ms"]}
    return by_metric[slo.metric]


def curve_points(plan: ServicePlan, loads: list[int], shape: WorkloadShape, slos: list[Slo]) -> list[Point]:
    """The plan's curve (plan/curve.py: requests above what the engine admits queue, so their TTFT
    grows) at these loads, each judged against the SLO."""
    from sparkserve.plan.curve import concurrency_curve
    from sparkserve.plan.speed import Workload

    work = Workload(prompt_len=shape.prompt_len, output_len=shape.output_len)
    out = []
    for cp in concurrency_curve(plan.deployment, plan.memory, work, tuple(loads)):
        e2e = cp.ttft_ms + max(0, shape.output_len - 1) * cp.itl_ms
        values = {"ttft_ms": cp.ttft_ms, "itl_ms": cp.itl_ms, "e2e_ms": e2e}
        failing = [f"{s.metric} {_value(s, values):.0f} ms > {s.bound_ms:g} ms"
                   for s in slos if not s.holds(_value(s, values))]
        if cp.capped_by and failing:
            failing.append(f"{cp.concurrency - cp.running} of {cp.concurrency} wait ({cp.capped_by.replace('_', ' ')})")
        out.append(Point(load=cp.concurrency, ttft_ms=cp.ttft_ms, itl_ms=cp.itl_ms, e2e_ms=e2e,
                         per_request_tps=cp.decode_tps, aggregate_tps=cp.output_tps,
                         goodput_rps=cp.concurrency / (e2e / 1000) if e2e > 0 else 0.0,
                         meets_slo=not failing, why="; ".join(failing)))
    return out


def predict(planner: Planner, candidate: Candidate, slos: list[Slo]) -> Prediction:
    """Plan a configuration: skip what cannot start or cannot meet the SLO even alone."""
    from sparkserve.plan.curve import admitted
    from sparkserve.plan.speed import Workload

    engine = planner.engine
    cap = int(candidate.args.get(engine.tune_concurrency_key) or 1)
    prediction = Prediction(candidate=candidate, cap=cap)
    conflict = engine.args_conflict(candidate.args)
    if conflict:
        prediction.skip = conflict
        return prediction
    try:
        alone = planner.plan(candidate.args, 1)
    except UserError as exc:
        prediction.skip = f"cannot be planned: {exc}"
        return prediction
    prediction.warnings = list(alone.warnings)
    if not alone.fits:
        prediction.skip = "does not fit: " + (alone.memory.reasons[0] if alone.memory.reasons else "not enough memory")
        return prediction
    shape = planner.shape
    prediction.kv_requests = admitted(alone.memory, Workload(prompt_len=shape.prompt_len,
                                                            output_len=shape.output_len)).kv_requests
    prediction.curve = curve_points(alone, levels(cap), shape, slos)
    first = prediction.curve[0]
    if not first.meets_slo:
        prediction.skip = f"cannot meet the SLO at concurrency 1: predicted {first.why}"
        return prediction
    good = max(p.load for p in prediction.curve if p.meets_slo)
    bad = min((p.load for p in prediction.curve if not p.meets_slo and p.load > good), default=None)
    while bad is not None and bad - good > 1:  # between two levels of the curve: bisect
        mid = (good + bad) // 2
        point = curve_points(alone, [mid], shape, slos)[0]
        prediction.curve.append(point)
        good, bad = (mid, bad) if point.meets_slo else (good, mid)
    prediction.curve.sort(key=lambda p: p.load)
    prediction.max_load = good
    return prediction


def order(predictions: list[Prediction]) -> list[Prediction]:
    """Most promising first; skipped ones last, in space order."""
    runnable = sorted((p for p in predictions if p.skip is None), key=lambda p: p.promise, reverse=True)
    return runnable + [p for p in predictions if p.skip is not None]

"""The search: plan every configuration, measure the most promising first, infer what the
measurements already decide, stop at the budget, and keep every finished trial in the journal.

Two measured facts spare whole trials. A setting that only caps the load (max-num-seqs,
max-num-batched-tokens, OLLAMA_NUM_PARALLEL) changes nothing at loads it does not reach: once a
configuration's SLO broke at load f, every configuration that differs from it only in such caps,
none of which binds at f, has the same highest load (inferred). A configuration whose
concurrency cap is at most a measured highest load behaves as that configuration at its cap: when
that load was measured there and gave less than the best, it cannot do better (dominated). And a
start that ran out of memory rules out the untried configurations that ask for as much memory or
more.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError, closest
from sparkserve.tune.predict import Planner, Prediction, WorkloadShape, order, planned_settings, predict
from sparkserve.tune.space import (
    Candidate,
    Limits,
    candidates,
    check_space,
    engine_module,
    parse_budget,
    parse_slos,
    parse_space,
    powers_around,
    slo_dict,
)
from sparkserve.tune.trial import GUARD_CAUSE, Context, Measure, run_trial

if TYPE_CHECKING:
    from sparkserve.bench.slo import Slo
    from sparkserve.engines.base import Engine
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.stack.load import Stack

# doctor's cause ids (and the guard's) that mean the configuration asked for more memory than there was.
MEMORY_CAUSES = frozenset({GUARD_CAUSE, "weights_oom", "unified_memory_exhausted", "cuda_oom_runtime",
                           "kv_cache_too_small_for_max_model_len", "free_memory_below_utilization",
                           "page_cache_pressure", "ollama_insufficient_system_memory"})
# vLLM's auto_tune starts its memory search here; tune never goes above it, and never steps down from it.
MAX_UTILIZATION = 0.98


@dataclass(frozen=True)
class Request:
    """Everything the command line asked for."""

    stack_file: str | None
    service: str | None
    slo: str
    shape: WorkloadShape
    measure: Measure = field(default_factory=Measure)
    budget: str | None = None
    space: tuple[str, ...] = ()
    resume: bool = False
    journal: str | None = None
    grid: bool = False  # benchmarks/tune_vs_grid.py: every configuration, every level from 1 up


@dataclass
class Search:
    """A planned search, ready to run (or to print, for --dry-run)."""

    request: Request
    stack: Stack
    name: str
    hw: HardwareProfile
    engine: Engine
    slos: list[Slo]
    space: dict[str, list]
    predictions: list[Prediction]  # in search order
    planner: Planner
    budget_s: float | None
    journal_path: Path
    notes: list[str] = field(default_factory=list)

    def header(self) -> dict:
        shape = self.request.shape
        return {"search": {"service": self.name, "slo": slo_dict(self.slos),
                           "workload": {"kind": shape.kind, "prompt_len": shape.prompt_len,
                                        "output_len": shape.output_len, "turns": shape.turns},
                           "space": self.space, "grid": self.request.grid}}


def _pick_service(stack: Stack, wanted: str | None) -> str:
    if wanted is None:
        if len(stack.services) == 1:
            return next(iter(stack.services))
        raise UserError(f"{stack.path} has several services ({', '.join(stack.services)}); "
                        "name the one to tune: sparkserve tune SERVICE")
    if wanted not in stack.services:
        guess = closest(wanted, stack.services, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise UserError(f"no service {wanted!r} in {stack.path}{hint} (services: {', '.join(stack.services)})")
    return wanted


def prepare(request: Request, *, hardware: str | None = None) -> Search:
    """Load the stack, build the space and plan every configuration; starts nothing."""
    from sparkserve.stack.load import STACK_FILE, find_stack, load_stack
    from sparkserve.stack.stackplan import stack_hardware

    path = find_stack(request.stack_file)
    if path is None:
        raise UserError(f"no {STACK_FILE} here; create one with 'sparkserve init' or pass --stack FILE")
    stack = load_stack(path)
    return plan_search(request, stack, stack_hardware(stack, hardware))


def plan_search(request: Request, stack: Stack, hw: HardwareProfile) -> Search:
    """The space of a stack's service and every configuration in it planned, most promising first."""
    from sparkserve.plan.planner import unified_share_utilization
    from sparkserve.tune.journal import journal_path

    slos = parse_slos(request.slo)
    budget_s = parse_budget(request.budget)
    shape = request.shape
    if shape.prompt_len < 1 or shape.output_len < 1:
        raise UserError("--prompt-len and --output-len must be at least 1")
    name = _pick_service(stack, request.service)
    engine = engine_module(stack.services[name].engine)
    planner = Planner(stack, name, hw, shape, engine)
    overrides = parse_space(list(request.space), engine)
    safe = None
    if engine.tune_memory_key:
        safe = min(MAX_UTILIZATION, unified_share_utilization(hw, planner.others_gib()))
    limits = Limits(min_len=shape.request_len, safe_util=safe)
    check_space(overrides, engine, limits)
    space = default_space(planner, slos, limits)
    space.update(overrides)
    predictions = order([predict(planner, c, slos) for c in candidates(space)])
    given = Path(request.journal).expanduser() if request.journal else journal_path(stack.path, name)
    return Search(request=request, stack=stack, name=name, hw=hw, engine=engine, slos=slos, space=space,
                  predictions=predictions, planner=planner, budget_s=budget_s, journal_path=given)


def default_space(planner: Planner, slos: list[Slo], limits: Limits) -> dict[str, list]:
    """The engine's defaults around the stack's own plan: the concurrency cap around the load the
    plan expects to meet the SLO, never above what the KV cache holds for this workload."""
    engine = planner.engine
    base = planner.plan({}, 1)
    settings = planned_settings(base)
    conc_key = engine.tune_concurrency_key
    most = engine.tune_max_concurrency(planner.hw)
    widest = planner.plan({conc_key: most}, 1)  # Ollama's KV cache grows with its parallel slots
    kv_cap = max(1, widest.memory.kv_tokens // planner.shape.request_len)
    cap = max(1, min(most, kv_cap))
    first = predict(planner, Candidate({conc_key: cap}), slos)
    seqs = powers_around(first.max_load or 1, cap)
    space = engine.tune_defaults(settings, max_model_len=max(base.memory.max_model_len, limits.min_len), seqs=seqs)
    key = engine.tune_memory_key
    if key and limits.safe_util is not None:
        space[key] = sorted({min(v, limits.safe_util) for v in space[key]})
    return space


# --- running it -----------------------------------------------------------------------------------

def _differs_only_in(a: dict, b: dict, keys: tuple[str, ...]) -> list[str] | None:
    """The keys in which two configurations differ, if all of them are among `keys`; else None."""
    diff = [k for k in a if a.get(k) != b.get(k)]
    return diff if all(k in keys for k in diff) else None


def decided_by(pred: Prediction, done: list[dict], engine: Engine, prompt_len: int) -> dict | None:
    """An untried configuration that measurements already decide: inferred, dominated, or ruled out."""
    args = pred.candidate.args
    conc = engine.tune_concurrency_key or ""
    for trial in done:
        other = trial["args"]
        if trial["status"] == "failed" and trial.get("cause_id") in MEMORY_CAUSES:
            keys = [k for k in (engine.tune_memory_key, engine.tune_length_key) if k and k in args]
            rest = [k for k in args if k not in keys and k not in engine.tune_load_caps]
            same_rest = all(args.get(k) == other.get(k) for k in rest)
            if keys and same_rest and all(args[k] >= other.get(k, args[k]) for k in keys):
                return {"status": "ruled_out", "by": trial["id"],
                        "reason": f"trial {trial['id']} ran out of memory ({trial['cause_id']}) asking for no more"}
        if trial["status"] != "measured":
            continue
        diff = _differs_only_in(args, other, engine.tune_load_caps)
        if diff is None:
            continue
        fail = trial.get("first_failing_load")
        if fail is not None and all(min(args[k], other[k]) >= engine.tune_cap_need(k, fail, prompt_len) for k in diff):
            return {"status": "inferred", "by": trial["id"], "load": trial.get("load"),
                    "max_load": _max_load(trial), "meets_slo": trial.get("meets_slo"),
                    "measured": trial.get("measured"),
                    "reason": f"same as trial {trial['id']}: the SLO broke there at load {fail}, where neither "
                              f"configuration's {', '.join(k.replace('_', '-') for k in diff)} limits anything"}
        best, highest = trial.get("measured"), _max_load(trial)
        if diff == [conc] and best is not None and highest is not None and args[conc] <= highest:
            # Up to its cap this configuration behaves as the measured one at the same load: decided only
            # when that load was measured there too (goodput need not grow with load) and gave no more
            # than the measured one's best.
            same = next((lv for lv in trial.get("levels", []) if lv["load"] == args[conc]), None)
            if same is not None and same["meets_slo"] and (same["goodput_rps"], same["output_tps"]) <= (
                    best["goodput_rps"], best["output_tps"]):
                return {"status": "dominated", "by": trial["id"],
                        "reason": f"at most {args[conc]} requests run at once, and trial {trial['id']} measured that "
                                  f"load below its best ({same['goodput_rps']:.2f} vs {best['goodput_rps']:.2f} req/s)"}
    return None


def _max_load(trial: dict) -> int | None:
    """The highest load a measured trial held the SLO at (journals from before it was kept: its load)."""
    return trial.get("max_load", trial.get("load"))


def correction(done: list[dict]) -> float:
    """How far the plan's max load was off so far (measured / predicted, the median); 1 before any."""
    ratios = [_max_load(t) / t["predicted"]["max_load"] for t in done
              if t["status"] == "measured" and _max_load(t) and t["predicted"].get("max_load")]
    return statistics.median(ratios) if ratios else 1.0


def stop_leftovers(search: Search, say: Callable[[str], None]) -> None:
    """An engine a killed search left running (its start is in the journal, its trial is not)."""
    from sparkserve.runtime import native
    from sparkserve.tune.journal import Journal

    path = search.stack.path
    seen = native.observe(path, search.name)
    leftovers = {e["pid"] for e in Journal(search.journal_path).unfinished_starts()}
    if seen.record is not None and seen.record.pid in leftovers and seen.state in (native.RUNNING, native.CRASHED):
        native.stop(path, search.name)
        say(f"stopped {search.name} (pid {seen.record.pid}), left running by the interrupted search")
        seen = native.observe(path, search.name)
    if seen.state == native.RUNNING:
        raise UserError(f"{search.name} is running (pid {seen.record.pid if seen.record else '?'}); tune starts its "
                        f"own copy with each configuration: stop it first with 'sparkserve down'")
    if seen.state != native.STOPPED:
        native.stop(path, search.name)


def run(search: Search, say: Callable[[str], None]) -> dict:
    """Measure the configurations in order until done or out of budget; returns the result."""
    from sparkserve.runtime import native
    from sparkserve.tune.journal import Journal
    from sparkserve.tune.report import result

    svc = search.stack.services[search.name]
    if svc.runtime != "native":
        raise UserError(f"services.{search.name} runs with runtime = \"{svc.runtime}\"; tune measures native "
                        "services: set runtime = \"native\" for the search (--dry-run plans any service)")
    journal = Journal(search.journal_path)
    finished = journal.begin(search.header(), resume=search.request.resume)
    stop_leftovers(search, say)
    executable = native.find_executable(svc.engine, getattr(search.stack.spec.stack, svc.engine), search.stack.path)
    ctx = Context(planner=search.planner, slos=search.slos, measure=search.request.measure, journal=journal,
                  executable=executable, say=say, grid=search.request.grid)
    began = time.monotonic()
    spent_before = sum(float(t.get("wall_s") or 0.0) for t in finished.values())
    deadline = None if search.budget_s is None else began + max(0.0, search.budget_s - spent_before)
    if finished:
        say(f"resuming: {len(finished)} trial(s) already in {search.journal_path}")
    trials: list[dict] = []
    done = list(finished.values())
    runnable = [p for p in search.predictions if p.skip is None]
    for number, pred in enumerate(search.predictions, 1):
        cand = pred.candidate
        if pred.skip is not None:
            trials.append({"id": cand.id, "args": cand.args, "status": "skipped", "reason": pred.skip,
                           "predicted": pred.to_dict()})
            continue
        if cand.id in finished:
            trials.append({k: v for k, v in finished[cand.id].items() if k != "kind"})
            continue
        prompt_len = search.request.shape.prompt_len
        decided = None if search.request.grid else decided_by(pred, done, search.engine, prompt_len)
        if decided is not None:
            trials.append({"id": cand.id, "args": cand.args, "predicted": pred.to_dict(), **decided})
            say(f"[{number}/{len(runnable)}] {cand.label()}: {decided['status']}: {decided['reason']}")
            continue
        if deadline is not None and time.monotonic() >= deadline:
            trials.append({"id": cand.id, "args": cand.args, "status": "not_run", "reason": "the budget was spent",
                           "predicted": pred.to_dict()})
            continue
        factor = 1.0 if search.request.grid else correction(done)
        start = max(1, min(pred.cap, round((pred.max_load or 1) * factor)))
        say(f"[{number}/{len(runnable)}] {cand.label()}: plan expects the SLO to hold up to load {pred.max_load}; "
            f"starting the search at {start}")
        record = run_trial(ctx, pred, start, deadline)
        journal.finished(record)
        done.append(record)
        trials.append(record)
        if record["status"] == "failed":
            say(f"  failed ({record['cause_id']}): {record['error']}")
        elif not record["meets_slo"]:
            say("  the SLO does not hold even at load 1")
        elif record["load"] == record["max_load"]:
            say(f"  highest load under the SLO: {record['load']}")
        else:
            say(f"  highest load under the SLO: {record['max_load']}; the best goodput at load {record['load']}")
    return result(search, trials, elapsed_s=spent_before + time.monotonic() - began)

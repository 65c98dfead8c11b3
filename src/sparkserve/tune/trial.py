"""One trial: start a configuration with the stack's native runtime under the memory guard, wait
until it answers, find the highest load at which the SLO holds, stop it.

The load search brackets from the load the plan (corrected by earlier trials) expects: doubling
while the SLO holds, halving while it does not, then bisects between the last level that held and
the first that did not. The trial keeps the level with the highest goodput among those measured
that met the SLO, which on a saturated server need not be the highest. Each level is one
`sparkserve bench` load point (the same client, metrics and goodput), with prompts seeded by the
level so a level's prompts are new to the server's prefix cache. A start that fails, trips the
guard or dies under load ends the trial with the cause doctor finds in the engine's log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError
from sparkserve.tune.predict import Planner, Prediction, WorkloadShape

if TYPE_CHECKING:
    from sparkserve.bench.slo import Slo
    from sparkserve.bench.target import Target
    from sparkserve.bench.tokens import TokenSource
    from sparkserve.tune.journal import Journal

# Server readings kept beside the client's figures for each level.
SERVER_KEYS = ("generation_tokens", "prompt_tokens", "preemptions", "kv_cache_usage_peak", "running_peak",
               "waiting_peak", "queue_time_ms_mean", "prefix_cache_hit_rate", "mem_available_gib_min",
               "ollama_eval_tps")
GUARD_CAUSE = "memory_guard"  # sparkserve's own: the guard stopped the engine before the host ran short


@dataclass(frozen=True)
class Measure:
    """How each load level is measured."""

    num_prompts: int = 32  # requests per level (at least twice the level)
    warmup: int = 2
    request_timeout_s: float = 300.0
    start_timeout_s: float = 900.0
    workload_kind: str = "random"
    prefix_len: int | None = None
    num_prefixes: int = 1
    dataset: str | None = None
    poll_s: float = 1.0


@dataclass
class Context:
    """What every trial of one search shares."""

    planner: Planner
    slos: list[Slo]
    measure: Measure
    journal: Journal
    executable: str
    say: Callable[[str], None]
    tokens: TokenSource | None = None
    grid: bool = False  # the benchmark's baseline: every level upward from 1, no bracketing

    @property
    def shape(self) -> WorkloadShape:
        return self.planner.shape


class Died(Exception):
    """The engine stopped during the load search."""


@dataclass
class LevelSearch:
    """Measured levels of one trial and what they say."""

    levels: dict[int, dict] = field(default_factory=dict)
    cut_by_budget: bool = False

    def meets(self, load: int) -> bool:
        return bool(self.levels[load]["meets_slo"])

    @property
    def highest(self) -> dict | None:
        """The highest load that met the SLO: what the bracketing and bisection look for."""
        good = [lv for lv in self.levels.values() if lv["meets_slo"]]
        return max(good, key=lambda lv: lv["load"]) if good else None

    @property
    def best(self) -> dict | None:
        """The trial's result: of the levels that met the SLO, the highest goodput, then output tok/s.
        Goodput need not grow with load (a saturated server can finish fewer requests in time at a
        higher load), so a lower level measured on the way can beat the highest one."""
        good = [lv for lv in self.levels.values() if lv["meets_slo"]]
        return max(good, key=lambda lv: (lv["goodput_rps"], lv["output_tps"], lv["load"])) if good else None

    @property
    def first_failing(self) -> int | None:
        highest = self.highest
        above = [c for c, lv in self.levels.items() if not lv["meets_slo"] and (highest is None or c > highest["load"])]
        return min(above) if above else None


def search_levels(measure: Callable[[int], dict], start: int, cap: int, deadline: float | None,
                  grid: bool = False) -> LevelSearch:
    """The highest load in 1..cap meeting the SLO, assuming it holds below any level where it holds;
    the level kept is the best of those measured that met it (`LevelSearch.best`)."""
    found = LevelSearch()

    def ok(load: int) -> bool | None:
        if load not in found.levels:
            if deadline is not None and time.monotonic() >= deadline and found.levels:
                found.cut_by_budget = True
                return None
            found.levels[load] = measure(load)
        return found.meets(load)

    if grid:
        for load in range(1, cap + 1):
            verdict = ok(load)
            if not verdict:
                break
        return found
    good, bad = 0, cap + 1
    load = max(1, min(cap, start))
    verdict = ok(load)
    if verdict is None:
        return found
    if verdict:
        good = load
        while good < cap:
            load = min(cap, good * 2)
            verdict = ok(load)
            if verdict is None:
                return found
            if not verdict:
                bad = load
                break
            good = load
    else:
        bad = load
        while bad > 1:
            load = max(1, bad // 2)
            verdict = ok(load)
            if verdict is None:
                return found
            if verdict:
                good = load
                break
            bad = load
    if _bisect(ok, good, bad) is None:
        return found
    best = found.best
    if best is None or (deadline is not None and time.monotonic() >= deadline):
        return found
    # Measure the chosen load once more: a level that met the SLO by luck is not the answer. If the
    # repeat misses at the highest load, bisect again below it (once: noise does not get to run the
    # search forever); the next best level measured is then the answer.
    was_highest = best is found.highest
    repeat = measure(best["load"])
    best["repeat"] = {k: repeat.get(k) for k in ("meets_slo", "goodput_rps", "output_tps", "ttft_ms", "itl_ms")}
    if not repeat["meets_slo"]:
        best["meets_slo"] = False
        if was_highest:
            lower = found.highest
            _bisect(ok, lower["load"] if lower else 0, best["load"])
    return found


def _bisect(ok: Callable[[int], bool | None], good: int, bad: int) -> bool | None:
    """Narrow (good, bad) to neighbours; None when the budget ran out on the way."""
    while good and bad - good > 1:
        load = (good + bad) // 2
        verdict = ok(load)
        if verdict is None:
            return None
        if verdict:
            good = load
        else:
            bad = load
    return True


def level_record(load: int, summary: dict, server: dict, slos: list[Slo]) -> dict:
    """One measured level: the client's figures, each SLO's verdict, the server's own readings."""
    attained = all(s["attained"] for s in summary["slo"])
    meets = bool(summary["completed"]) and not summary["failed"] and attained

    def stats(name: str) -> dict:
        values = summary[name]
        return {k: (round(values[k], 3) if values.get(k) is not None else None) for k in ("mean", "p50", "p90", "p99")}

    return {
        "load": load,
        "meets_slo": meets,
        "goodput_rps": round(summary["goodput_rps"] or 0.0, 4),
        "request_rate": round(summary["request_rate"], 4),
        "output_tps": round(summary["output_tps"], 2),
        "per_request_tps": round(summary["decode_tps"], 2) if summary["decode_tps"] else None,
        "completed": summary["completed"],
        "failed": summary["failed"],
        "errors": summary["errors"],
        "ttft_ms": stats("ttft_ms"),
        "itl_ms": stats("itl_ms"),
        "tpot_ms": stats("tpot_ms"),
        "e2e_ms": stats("e2e_ms"),
        "slo": [{"slo": s["slo"], "observed_ms": s["observed_ms"], "attained": s["attained"]} for s in summary["slo"]],
        "server": {k: server.get(k) for k in SERVER_KEYS if server.get(k) is not None},
    }


def _stop_engine(record) -> None:
    """Stop a trial's engine; one stopped in the instant after its start may not be vouched for by
    its group yet, so the engine itself (the same pid and start time) is then stopped directly."""
    import os
    import signal

    from sparkserve.runtime import native, procs

    native.stop_record(record)
    deadline = time.monotonic() + native.stop_timeout()
    sig = signal.SIGTERM
    while True:
        info = procs.proc_info(record.pid)
        if info is None or not info.alive or info.start_ticks != record.start_ticks:
            return
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            return
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL
        time.sleep(0.2)


def _cause(log: Path, guard_message: str | None, fallback: str, hidden: list[str]) -> dict:
    """The trial's failure: doctor's cause id from the engine's log (or the guard's), with the line."""
    from sparkserve.runtime import native
    from sparkserve.secrets import redact_text

    if guard_message:
        return {"cause_id": GUARD_CAUSE, "error": guard_message}
    fallback = redact_text(fallback, hidden)
    findings = []
    try:
        from sparkserve.doctor.diagnose import diagnose

        findings = diagnose("\n".join(native.log_tail(log, 400, hidden)))
    except (OSError, ValueError):
        findings = []
    if findings:
        return {"cause_id": findings[0].cause_id, "error": fallback, "fix": findings[0].fix}
    return {"cause_id": "unknown", "error": fallback}


def run_trial(ctx: Context, prediction: Prediction, start_load: int, deadline: float | None) -> dict:
    """Start, search, stop; returns the trial's journal record (status measured or failed)."""
    from sparkserve.runtime import native, procs
    from sparkserve.runtime.memguard import Floor, MemoryGuard
    from sparkserve.runtime.ports import check_ports_free
    from sparkserve.runtime.readiness import Target as ReadyTarget
    from sparkserve.runtime.readiness import wait_ready
    from sparkserve.secrets import secret_values

    planner, cand = ctx.planner, prediction.candidate
    stack = planner.stack_with(cand.args)
    name, path = planner.name, planner.stack.path
    settings = stack.spec.stack
    launch = native.build_launch(stack, name, planner.plan(cand.args, 1), ctx.executable)
    log = native.log_file(path, name)
    hidden = secret_values(launch.env)
    began = time.monotonic()
    record: dict = {"id": cand.id, "args": cand.args, "predicted": prediction.to_dict(), "start_load": start_load,
                    "started_at": time.time()}
    lock = native.StartLock(path, name).acquire()
    started = None
    try:
        check_ports_free(settings.bind, {name: launch.port}, path)
        # A Ctrl-C during the start lands after the engine's record is written, inside the try that stops it.
        with procs.deferred_signals():
            proc, started = native.start(path, launch, log_max_mib=settings.log_max_mib)
            ctx.journal.started(cand.id, started.pid, started.pgid)
        engine_record = started

        def breach(_message: str) -> None:
            native.stop_record(engine_record, kill_at_once=True)  # free the memory now, no grace period

        guard = MemoryGuard(name, Floor(settings.min_mem_available_gib), on_breach=breach)

        def alive() -> str | None:
            if guard.tripped:
                return guard.tripped
            code = proc.poll()
            return None if code is None else native.exit_reason(launch.engine, code, log, hidden)

        with guard:
            try:
                ready = wait_ready(ReadyTarget(name=name, engine=launch.engine, base_url=launch.url,
                                               model=launch.model, api_key=launch.api_key),
                                   timeout=ctx.measure.start_timeout_s, alive=alive, poll=ctx.measure.poll_s)
            except UserError as exc:
                record.update(status="failed", phase="start", **_cause(log, guard.tripped, str(exc), hidden))
                return record
            record["ready_s"] = round(ready.seconds, 1)
            ctx.say(f"  ready in {ready.seconds:.0f} s; searching the load")
            try:
                found = _search(ctx, launch, stack, prediction, start_load, deadline, alive)
            except (Died, UserError) as exc:  # the engine stopped answering, or what it says rules the load out
                record.update(status="failed", phase="load", **_cause(log, guard.tripped, str(exc), hidden))
                return record
    finally:
        if started is not None:
            with procs.deferred_signals():
                _stop_engine(started)
                proc.poll()
                native.pid_file(path, name).unlink(missing_ok=True)
        lock.release()
        record["wall_s"] = round(time.monotonic() - began, 1)
    best, highest = found.best, found.highest
    record.update(status="measured", levels=sorted(found.levels.values(), key=lambda lv: lv["load"]),
                  cut_by_budget=found.cut_by_budget, load=best["load"] if best else None,
                  max_load=highest["load"] if highest else None, first_failing_load=found.first_failing,
                  meets_slo=best is not None, measured=best)
    return record


def _search(ctx: Context, launch, stack, prediction: Prediction, start_load: int, deadline: float | None,
            alive: Callable[[], str | None]) -> LevelSearch:
    from sparkserve.bench.target import Target, probe
    from sparkserve.bench.tokens import resolve_tokenizer

    svc = stack.services[ctx.planner.name]
    target = probe(Target(api=ctx.planner.engine.bench_apis[0], base_url=launch.url, model=launch.model,
                          engine=svc.engine,
                          service=ctx.planner.name, api_key=launch.api_key, stack_model=svc.model,
                          stack_quant=svc.quant, stack_hardware=stack.spec.stack.hardware,
                          server_args=dict(svc.args)))
    if ctx.tokens is None:
        ctx.tokens = resolve_tokenizer(None, target.model_root, target.stack_model or target.model)

    def measure(load: int) -> dict:
        ctx.say(f"  load {load}: measuring")
        level = measure_level(ctx, target, load)
        if level is None:
            raise Died(alive() or "the engine stopped answering during the load")
        verdict = "meets the SLO" if level["meets_slo"] else "misses the SLO"
        ctx.say(f"  load {load}: {verdict}: goodput {level['goodput_rps']:.2f} req/s, "
                f"{level['output_tps']:.0f} output tok/s, TTFT p90 {level['ttft_ms']['p90']} ms, "
                f"ITL p90 {level['itl_ms']['p90']} ms")
        return level

    return search_levels(measure, start_load, prediction.cap, deadline, grid=ctx.grid)


def measure_level(ctx: Context, target: Target, load: int) -> dict | None:
    """One bench load point at concurrency `load`; None when the server died during it."""
    from sparkserve.bench.client import RequestOptions
    from sparkserve.bench.load import LoadPoint, StopRule
    from sparkserve.bench.metrics import summarize
    from sparkserve.bench.planref import PlanBasis
    from sparkserve.bench.runner import BenchPlan, execute
    from sparkserve.bench.workload import Workload, WorkloadSpec

    m, shape = ctx.measure, ctx.shape
    assert ctx.tokens is not None
    spec = WorkloadSpec(kind=m.workload_kind, prompt_len=shape.prompt_len, output_len=shape.output_len,
                        prefix_len=m.prefix_len, num_prefixes=m.num_prefixes, turns=shape.turns, dataset=m.dataset,
                        seed=load)
    bench = BenchPlan(target=target, tokens=ctx.tokens, workload=Workload(spec, ctx.tokens, target.max_model_len),
                      points=[LoadPoint(concurrency=load)], stop=StopRule(num_prompts=max(m.num_prompts, 2 * load)),
                      warmup=min(m.warmup, load), slos=ctx.slos,
                      request=RequestOptions(ignore_eos=not target.is_ollama, timeout_s=m.request_timeout_s),
                      basis=PlanBasis(None, None, None, None, reason="tune compares with its own prediction"),
                      sample_interval_s=1.0)
    execution = asyncio.run(execute(bench))
    if execution.interrupted:
        raise KeyboardInterrupt
    if not execution.runs:
        return None
    run, server = execution.runs[0]
    if run.stopped_reason == "server_died":
        return None
    return level_record(load, summarize(run.outcomes, run.duration_s, ctx.slos), server, ctx.slos)

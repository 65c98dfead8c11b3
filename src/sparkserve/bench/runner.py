"""One `sparkserve bench`: check the target, build the workload, run each load point, keep a result.

Ctrl-C stops the current point, cancels what is in flight and still writes the result of what
finished (marked interrupted). Server faults never raise: they are counted per request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sparkserve.bench.client import Client, RequestOptions, make_session
from sparkserve.bench.load import Liveness, LoadPoint, PointDriver, PointRun, StopRule
from sparkserve.bench.metrics import request_metrics, summarize
from sparkserve.bench.outcome import Outcome
from sparkserve.bench.planref import PlanBasis, compare_with_plan
from sparkserve.bench.sampler import Sampler, Snapshot
from sparkserve.bench.schema import BenchResult
from sparkserve.bench.slo import Slo
from sparkserve.bench.target import Target
from sparkserve.bench.tokens import TokenSource
from sparkserve.bench.workload import Workload, WorkloadSpec


@dataclass
class BenchPlan:
    """A checked benchmark, ready to run."""

    target: Target
    tokens: TokenSource
    workload: Workload
    points: list[LoadPoint]
    stop: StopRule
    warmup: int
    slos: list[Slo]
    request: RequestOptions
    basis: PlanBasis
    sample_interval_s: float = 1.0
    warnings: list[str] = field(default_factory=list)


Progress = Callable[[str, PointRun | None, Outcome | None], None]  # event, run, outcome


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


@dataclass
class Execution:
    runs: list[tuple[PointRun, dict]]  # each load point with its server stats
    interrupted: bool
    server_config: dict[str, str]  # vLLM cache_config_info labels


async def execute(bench: BenchPlan, progress: Progress | None = None) -> Execution:
    """Run every load point in order; stops early on Ctrl-C or when the server dies."""
    loop = asyncio.get_running_loop()
    interrupt = asyncio.Event()

    def on_sigint() -> None:
        interrupt.set()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C raises KeyboardInterrupt as usual
        if progress:
            progress("interrupt", None, None)

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        handler_set = True
    except (NotImplementedError, RuntimeError):
        handler_set = False
    caps = [p.concurrency for p in bench.points]
    limit = 0 if any(c is None for c in caps) else max(c or 1 for c in caps)
    origin = time.perf_counter()
    out: list[tuple[PointRun, dict]] = []
    config: dict[str, str] = {}
    try:
        async with make_session(limit) as http, Sampler(bench.target, bench.sample_interval_s, origin) as sampler:
            client = Client(bench.target, http, bench.tokens, bench.request)
            probe_path = "/api/version" if bench.target.is_ollama else "/v1/models"
            liveness = Liveness(sampler.http, bench.target.base_url + probe_path, bench.target.headers())
            next_session = 0
            for point in bench.points:
                if interrupt.is_set():
                    break
                before: list[Snapshot | None] = [None]

                async def on_start(before: list[Snapshot | None] = before) -> None:
                    before[0] = await sampler.sample()

                def on_outcome(run: PointRun, outcome: Outcome) -> None:
                    if progress:
                        progress("outcome", run, outcome)

                driver = PointDriver(client, bench.workload, point, bench.stop, first_session=next_session,
                                     warmup=bench.warmup, liveness=liveness, interrupt=interrupt,
                                     seed=bench.workload.spec.seed, on_outcome=on_outcome, on_start=on_start)
                if progress:
                    progress("start", driver.run, None)
                run = await driver.execute()
                after = await sampler.sample() if not interrupt.is_set() else None
                next_session = driver.next_session
                start = run.started_at - origin
                end = start + run.duration_s + bench.sample_interval_s
                readings = [r for r in sampler.readings if start - 1e-9 <= r.t <= end]
                out.append((run, server_stats(bench.target, before[0], after, readings, run.outcomes, start)))
                if progress:
                    progress("end", run, None)
                if run.stopped_reason in ("interrupted", "server_died"):
                    break
            config = dict(sampler.info)
    finally:
        if handler_set and not interrupt.is_set():
            loop.remove_signal_handler(signal.SIGINT)
    return Execution(out, interrupt.is_set(), config)


def server_stats(target: Target, before: Snapshot | None, after: Snapshot | None, readings: list,
                 outcomes: list[Outcome], start: float) -> dict:
    """The `ServerStats` of one point: counter deltas, gauge peaks, Ollama's own timings."""
    metrics = f"{target.engine}-metrics" if before and after else "none"
    stats: dict = {"source": target.engine if target.is_ollama else metrics}
    if before is not None and after is not None:
        delta = {k: after.counters[k] - before.counters.get(k, 0.0) for k in after.counters}
        stats["generation_tokens"] = delta.get("generation_tokens_total")
        stats["prompt_tokens"] = delta.get("prompt_tokens_total")
        stats["prefix_cache_queries"] = delta.get("prefix_cache_queries_total")
        stats["prefix_cache_hits"] = delta.get("prefix_cache_hits_total")
        if stats["prefix_cache_queries"]:
            stats["prefix_cache_hit_rate"] = (stats["prefix_cache_hits"] or 0.0) / stats["prefix_cache_queries"]
        stats["preemptions"] = delta.get("num_preemptions_total")
        name = "request_queue_time_seconds"
        count = after.counts.get(name, 0.0) - before.counts.get(name, 0.0)
        if count > 0:
            stats["queue_time_ms_mean"] = 1000 * (after.sums.get(name, 0.0) - before.sums.get(name, 0.0)) / count
            b0, b1 = before.buckets.get(name, {}), after.buckets.get(name, {})
            buckets = sorted((bound, b1[bound] - b0.get(bound, 0.0)) for bound in b1)
            stats["queue_time_ms_p90_at_most"] = _bucket_bound(0.9, buckets)
        for key, gauge in (("kv_cache_usage_peak", after.gauges.get("kv_cache_usage_perc")),
                           ("running_peak", after.gauges.get("num_requests_running")),
                           ("waiting_peak", after.gauges.get("num_requests_waiting"))):
            stats[key] = gauge
    peaks = {"kv_cache_usage_peak": "kv_cache_usage", "running_peak": "running", "waiting_peak": "waiting",
             "gpu_util_pct_peak": "gpu_util_pct", "gpu_mem_used_gib_peak": "gpu_mem_used_gib",
             "gpu_power_w_peak": "gpu_power_w"}
    for key, attr in peaks.items():
        values = [getattr(r, attr) for r in readings if getattr(r, attr) is not None]
        if stats.get(key) is not None:
            values.append(stats[key])
        stats[key] = max(values) if values else None
    mem = [r.mem_available_gib for r in readings if r.mem_available_gib is not None]
    stats["mem_available_gib_min"] = min(mem) if mem else None
    if target.is_ollama:
        timings = [o.server_timing for o in outcomes if o.ok and o.server_timing]
        evals = sum(t.get("eval_count", 0) for t in timings)
        eval_ms = sum(t.get("eval_ms", 0.0) for t in timings)
        prompts = sum(t.get("prompt_eval_count", 0) for t in timings)
        prompt_ms = sum(t.get("prompt_eval_ms", 0.0) for t in timings)
        stats["ollama_eval_tps"] = 1000 * evals / eval_ms if eval_ms > 0 else None
        stats["ollama_prompt_eval_tps"] = 1000 * prompts / prompt_ms if prompt_ms > 0 else None
        stats["ollama_load_ms_total"] = sum(t.get("load_ms", 0.0) for t in timings) if timings else None
    stats["readings"] = [{"t_s": round(r.t - start, 3), **{k: v for k, v in vars(r).items() if k != "t"}}
                         for r in readings]
    return stats


def _bucket_bound(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Upper bound (ms) of the histogram bucket that holds quantile q: the p-th value is at most this.

    vLLM's queue-time buckets start at 0.3 s, so interpolating inside a bucket would invent values.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= rank:
            return None if bound == float("inf") else bound * 1000
    return None


def request_record(o: Outcome, run_start: float) -> dict:
    m = request_metrics(o.chunk_times, o.chunk_tokens, o.output_tokens) if o.ok else None
    return {
        "index": o.index, "session": o.session, "turn": o.turn,
        "start_s": round(o.sent_at - run_start, 6), "queue_ms": round(max(0.0, o.sent_at - o.queued_at) * 1000, 3),
        "ok": o.ok, "error_kind": o.error_kind, "error": o.error, "http_status": o.http_status,
        "ttft_ms": m.ttft_s * 1000 if m else None,
        "tpot_ms": m.tpot_s * 1000 if m and m.tpot_s is not None else None,
        "e2e_ms": m.e2e_s * 1000 if m else None,
        "prompt_tokens": o.prompt_tokens, "prompt_tokens_sent": o.prompt_tokens_sent,
        "output_tokens": o.tokens if o.chunk_tokens or o.output_tokens is not None else None,
        "expected_output_tokens": o.expected_output_tokens, "short_output": o.short_output,
        "finish_reason": o.finish_reason, "tokens_exact": o.tokens_exact,
        "chunk_ms": [round(t * 1000, 3) for t in o.chunk_times], "chunk_tokens": list(o.chunk_tokens),
        "server_timing": o.server_timing,
    }


def _temperature(request: RequestOptions) -> float:
    """What the requests asked: greedy (0) unless --temperature."""
    return 0.0 if request.temperature is None else request.temperature


def build_result(bench: BenchPlan, runs: list[tuple[PointRun, dict]], interrupted: bool, *,
                 environment: dict, num_prompts: int | None, duration_s: float | None) -> BenchResult:
    spec: WorkloadSpec = bench.workload.spec
    run_results = []
    for run, server in runs:
        summary = summarize(run.outcomes, run.duration_s, bench.slos)
        point = run.point
        fixed = point.rate is None and point.concurrency
        batch = int(point.concurrency) if fixed and point.concurrency else max(1, round(summary["mean_concurrency"]))
        plan = compare_with_plan(bench.basis, batch=batch, prompt_len=spec.prompt_len, output_len=spec.output_len,
                                 measured=summary)
        run_results.append({
            "load": {"mode": point.mode, "concurrency": point.concurrency, "rate": point.rate,
                     "burstiness": point.burstiness, "label": point.label},
            "started_at": _iso(run.wall_started or time.time()), "stopped_reason": run.stopped_reason,
            "cancelled": run.cancelled, "warmup_failed": run.warmup_failed, "summary": summary, "plan": plan,
            "server": server, "requests": [request_record(o, run.started_at) for o in run.outcomes],
        })
    warnings = list(bench.warnings)
    if bench.workload.synth.inexact and bench.tokens.exact:
        warnings.append(f"{bench.workload.synth.inexact} prompt(s) could not be brought to the exact token count")
    target = bench.target
    data = {
        "created_at": _iso(time.time()),
        "interrupted": interrupted,
        "target": {"api": target.api, "url": target.base_url, "model": target.model, "engine": target.engine,
                   "service": target.service},
        "workload": {
            "kind": spec.kind, "prompt_len": spec.prompt_len, "output_len": spec.output_len,
            "prefix_len": bench.workload.prefix_len if spec.kind == "prefix" else None,
            "num_prefixes": spec.num_prefixes if spec.kind == "prefix" else None,
            "turns": spec.turns if spec.kind == "multiturn" else None, "dataset": spec.dataset,
            "ignore_eos": bench.request.ignore_eos, "temperature": _temperature(bench.request),
            "num_prompts": num_prompts, "duration_s": duration_s, "warmup": bench.warmup, "seed": spec.seed,
            "tokenizer": bench.tokens.source, "tokens_exact": bench.tokens.exact,
        },
        "environment": environment,
        "slo": [s.text for s in bench.slos],
        "warnings": warnings,
        "summary": run_results[-1]["summary"] if run_results else None,
        "runs": run_results,
    }
    return BenchResult.model_validate(data)

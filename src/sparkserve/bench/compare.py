"""`sparkserve bench compare A.json B.json`: what changed between two results, point by point.

Load points pair up by their load (mode and value); a metric's change is B relative to A,
judged better or worse by its direction (latency down is better, throughput up is better).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from sparkserve.bench.schema import SCHEMA_VERSION, BenchResult, RunResult
from sparkserve.errors import UserError, read_json

# (label, path into the summary, higher is better)
METRICS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("TTFT mean ms", ("ttft_ms", "mean"), False),
    ("TTFT p50 ms", ("ttft_ms", "p50"), False),
    ("TTFT p99 ms", ("ttft_ms", "p99"), False),
    ("TPOT mean ms", ("tpot_ms", "mean"), False),
    ("TPOT p99 ms", ("tpot_ms", "p99"), False),
    ("ITL p50 ms", ("itl_ms", "p50"), False),
    ("ITL p99 ms", ("itl_ms", "p99"), False),
    ("E2E mean ms", ("e2e_ms", "mean"), False),
    ("E2E p99 ms", ("e2e_ms", "p99"), False),
    ("output tok/s", ("output_tps",), True),
    ("total tok/s", ("total_tps",), True),
    ("requests/s", ("request_rate",), True),
    ("goodput req/s", ("goodput_rps",), True),
    ("completed", ("completed",), True),
    ("failed", ("failed",), False),
)
ENVIRONMENT_KEYS = ("engine", "engine_version", "model", "max_model_len", "server_args", "server_config")
WORKLOAD_KEYS = ("kind", "prompt_len", "output_len", "prefix_len", "num_prefixes", "turns", "dataset", "ignore_eos",
                 "temperature")


def load_result(path: str) -> BenchResult:
    file = Path(path).expanduser()
    data = read_json(file, str(file))
    if not isinstance(data, dict) or data.get("tool") != "sparkserve bench":
        raise UserError(f"{file}: not a sparkserve bench result (write one with 'sparkserve bench --json FILE')")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{file}: result schema {data.get('schema_version')} but this sparkserve reads "
                        f"{SCHEMA_VERSION}")
    try:
        return BenchResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"{file}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _key(run: RunResult) -> tuple:
    return (run.load.mode, run.load.concurrency, run.load.rate, run.load.burstiness)


def _value(run: RunResult, path: tuple[str, ...]) -> float | None:
    value: object = run.summary
    for part in path:
        value = getattr(value, part, None)
    return value if isinstance(value, (int, float)) else None


def compare_results(a: BenchResult, b: BenchResult) -> dict:
    """Differences as data: paired points with per-metric changes, and setup differences."""
    b_runs = {_key(r): r for r in b.runs}
    points = []
    for ra in a.runs:
        rb = b_runs.get(_key(ra))
        if rb is None:
            continue
        rows = []
        for label, path, higher in METRICS:
            va, vb = _value(ra, path), _value(rb, path)
            change = None if va in (None, 0) or vb is None else 100.0 * (vb - va) / va
            verdict = None
            if va is not None and vb is not None and va != vb:
                verdict = "better" if (vb > va) == higher else "worse"
            rows.append({"metric": label, "a": va, "b": vb, "change_pct": change, "verdict": verdict})
        points.append({"load": ra.load.label, "metrics": rows, "plan_a": ra.plan.line, "plan_b": rb.plan.line})
    setup = []
    for section, keys in (("environment", ENVIRONMENT_KEYS), ("workload", WORKLOAD_KEYS)):
        da, db = getattr(a, section).model_dump(), getattr(b, section).model_dump()
        for key in keys:
            if da.get(key) != db.get(key):
                setup.append({"field": f"{section}.{key}", "a": da.get(key), "b": db.get(key)})
    unmatched = [r.load.label for r in a.runs if _key(r) not in b_runs] + \
        [r.load.label for r in b.runs if _key(r) not in {_key(x) for x in a.runs}]
    return {"points": points, "setup": setup, "unmatched": unmatched}


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def run_compare(path_a: str, path_b: str, *, json_out: bool = False) -> None:
    a, b = load_result(path_a), load_result(path_b)
    diff = compare_results(a, b)
    if json_out:
        print(json.dumps(diff, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not diff["points"]:
        raise UserError(f"{path_a} and {path_b} share no load point (A: {', '.join(r.load.label for r in a.runs)}; "
                        f"B: {', '.join(r.load.label for r in b.runs)})")
    for point in diff["points"]:
        table = Table(title=f"{point['load']}: A = {path_a}, B = {path_b}", title_justify="left")
        table.add_column("metric", justify="left")
        for col in ("A", "B", "change"):
            table.add_column(col, justify="right")
        for row in point["metrics"]:
            change = "-" if row["change_pct"] is None else f"{row['change_pct']:+.1f} %"
            style = {"better": "green", "worse": "red"}.get(row["verdict"] or "", "")
            table.add_row(row["metric"], _num(row["a"]), _num(row["b"]), f"[{style}]{change}[/]" if style else change)
        console.print(table)
        if point["plan_a"] or point["plan_b"]:
            console.print(f"  plan A: {point['plan_a'] or '-'}\n  plan B: {point['plan_b'] or '-'}")
    if diff["setup"]:
        console.print("[bold]setup differences[/] (results may not be comparable):")
        for d in diff["setup"]:
            console.print(f"  {d['field']}: {_short(d['a'])} -> {_short(d['b'])}")
    if diff["unmatched"]:
        console.print(f"load points in only one result: {', '.join(diff['unmatched'])}")

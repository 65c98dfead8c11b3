"""What a search found: the best configuration, the Pareto front, each trial's plan against its
measurement; as a table, JSON, an offline HTML page, and written back into the stack file."""

from __future__ import annotations

import difflib
import json
import os
import shutil
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from sparkserve.tune.search import Search


def _plan_vs_measured(search: Search, trial: dict) -> dict | None:
    """The plan at the load tune settled on, beside the measurement there (measured / predicted)."""
    from sparkserve.tune.predict import curve_points

    level = trial.get("measured")
    if trial.get("status") != "measured" or not level:
        return None
    load = level["load"]
    point = curve_points(search.planner.plan(trial["args"], 1), [load], search.planner.shape, search.slos)[0]

    def ratio(measured: float | None, predicted: float) -> float | None:
        return round(measured / predicted, 3) if measured and predicted else None

    return {
        "load": load,
        "predicted": {"max_load": trial["predicted"].get("max_load"), "output_tps": round(point.aggregate_tps, 1),
                      "per_request_tps": round(point.per_request_tps, 2), "ttft_ms": round(point.ttft_ms, 1),
                      "itl_ms": round(point.itl_ms, 2)},
        "measured_over_predicted": {
            "max_load": ratio(trial.get("max_load", trial.get("load")), trial["predicted"].get("max_load") or 0),
            "output_tps": ratio(level["output_tps"], point.aggregate_tps),
            "per_request_tps": ratio(level.get("per_request_tps"), point.per_request_tps),
            "ttft_ms": ratio(level["ttft_ms"]["p50"], point.ttft_ms),
        },
    }


def pareto(trials: list[dict]) -> list[dict]:
    """Measured levels no other level beats on both per-request and aggregate output tok/s."""
    points = [{"id": t["id"], "args": t["args"], "load": lv["load"], "per_request_tps": lv["per_request_tps"],
               "aggregate_tps": lv["output_tps"], "meets_slo": lv["meets_slo"]}
              for t in trials if t.get("status") == "measured" for lv in t.get("levels", [])
              if lv.get("per_request_tps") and not lv["failed"]]
    front = [p for p in points
             if not any(q["per_request_tps"] >= p["per_request_tps"] and q["aggregate_tps"] >= p["aggregate_tps"]
                        and (q["per_request_tps"], q["aggregate_tps"]) != (p["per_request_tps"], p["aggregate_tps"])
                        for q in points)]
    return sorted(front, key=lambda p: p["per_request_tps"])


def result(search: Search, trials: list[dict], *, elapsed_s: float | None) -> dict:
    from sparkserve.tune.space import slo_dict

    for trial in trials:
        compared = _plan_vs_measured(search, trial)
        if compared:
            trial["plan_vs_measured"] = compared
    good = [t for t in trials if t.get("status") == "measured" and t.get("meets_slo")]
    best_trial = max(good, key=lambda t: (t["measured"]["goodput_rps"], t["measured"]["output_tps"]), default=None)
    best = None
    if best_trial:
        best = {"id": best_trial["id"], "args": best_trial["args"], "load": best_trial["load"],
                "measured": best_trial["measured"], "meets_slo": True,
                "predicted": best_trial["predicted"].get("at_max_load")}
    notes = list(search.notes)
    ratios = [t["plan_vs_measured"]["measured_over_predicted"]["max_load"] for t in trials
              if t.get("plan_vs_measured") and t["plan_vs_measured"]["measured_over_predicted"]["max_load"]]
    if ratios:
        ratios.sort()
        mid = ratios[len(ratios) // 2]
        notes.append(f"the plan ({search.hw.name}) expected a highest load {1 / mid:.2g}x the measured one "
                     f"(median of {len(ratios)} trial(s)); each trial after the first started its load search at "
                     "the plan's load corrected by this factor")
    shape = search.request.shape
    return {
        "service": search.name,
        "engine": search.engine.name,
        "hardware": search.hw.id,
        "slo": slo_dict(search.slos),
        "workload": {"kind": shape.kind, "prompt_len": shape.prompt_len, "output_len": shape.output_len,
                     "turns": shape.turns},
        "space": search.space,
        "budget_s": search.budget_s,
        "elapsed_s": round(elapsed_s, 1) if elapsed_s is not None else None,
        "journal": str(search.journal_path),
        "best": best,
        "pareto": pareto(trials),
        "trials": trials,
        "notes": notes,
    }


def dry_run_result(search: Search) -> dict:
    """What tune would try, with the plan's predictions; nothing is started."""
    trials = [{"id": p.candidate.id, "args": p.candidate.args, "status": "skipped" if p.skip else "planned",
               **({"reason": p.skip} if p.skip else {}), "predicted": p.to_dict()} for p in search.predictions]
    data = result(search, trials, elapsed_s=None)
    data["dry_run"] = True
    return data


# --- printing -------------------------------------------------------------------------------------

def _args_text(args: dict, space: dict[str, list]) -> str:
    """The keys that vary in the space (the rest are the same for every trial)."""
    from sparkserve.tune.space import Candidate

    varying = {k: v for k, v in args.items() if len(space.get(k, [])) > 1} or args
    return Candidate(varying).label()


def _ms(level: dict | None, key: str) -> str:
    value = (level or {}).get(key, {}).get("p90") if level else None
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def print_result(data: dict, console: Console) -> None:
    from rich.table import Table

    dry = data.get("dry_run", False)
    slo = ", ".join(f"{k}={v:g}" for k, v in data["slo"].items())
    w = data["workload"]
    console.print(f"[bold]sparkserve tune[/] {data['service']} ({data['engine']}, plan for {data['hardware']}): "
                  f"SLO {slo}; workload {w['kind']} {w['prompt_len']}+{w['output_len']} tokens", soft_wrap=True)
    fixed = {k: v[0] for k, v in data["space"].items() if len(v) == 1}
    if fixed:
        from sparkserve.tune.space import Candidate

        console.print(f"  same in every trial: {Candidate(fixed).label()}", markup=False, soft_wrap=True)
    table = Table(show_edge=False, pad_edge=False)
    for col, right in (("#", True), ("configuration", False), ("status", False), ("plan: max load", True),
                       ("plan: tok/s", True), ("load", True), ("goodput req/s", True), ("out tok/s", True),
                       ("tok/s/req", True), ("TTFT p90 ms", True), ("ITL p90 ms", True)):
        table.add_column(col, justify="right" if right else "left", overflow="fold")
    for i, t in enumerate(data["trials"], 1):
        pred = t.get("predicted") or {}
        at = pred.get("at_max_load") or {}
        level = t.get("measured")
        status = t["status"]
        if status == "failed":
            status = f"failed: {t.get('cause_id')}"
        elif status == "measured":
            status = "meets SLO" if t.get("meets_slo") else "misses SLO at 1"
        elif t.get("by"):
            status = f"{status} (by {t['by']})"
        elif status == "skipped":
            status = f"skipped: {t.get('reason', '')}"
        table.add_row(str(i), _args_text(t["args"], data["space"]), status,
                      str(pred.get("max_load") or "-"), f"{at['aggregate_tps']:.0f}" if at else "-",
                      str(t.get("load") or "-") if not dry else "-",
                      f"{level['goodput_rps']:.2f}" if level else "-", f"{level['output_tps']:.0f}" if level else "-",
                      f"{level['per_request_tps']:.0f}" if level and level.get("per_request_tps") else "-",
                      _ms(level, "ttft_ms"), _ms(level, "itl_ms"))
    console.print(table)
    best = data.get("best")
    if dry:
        console.print("dry run: nothing was started; the plan's curve orders the trials and sets each first load")
    elif best:
        m = best["measured"]
        console.print(f"[bold green]best[/]: {_args_text(best['args'], data['space'])} at load {best['load']}: "
                      f"goodput {m['goodput_rps']:.2f} req/s, {m['output_tps']:.0f} output tok/s", soft_wrap=True)
    else:
        console.print("[yellow]no configuration met the SLO[/]")
    if data.get("pareto"):
        front = "; ".join(f"{p['per_request_tps']:.0f} tok/s per request with {p['aggregate_tps']:.0f} in all "
                          f"(trial {p['id']}, load {p['load']}{'' if p['meets_slo'] else ', misses the SLO'})"
                          for p in data["pareto"])
        console.print(f"Pareto front: {front}", markup=False, soft_wrap=True)
    for note in data.get("notes", []):
        console.print(f"note: {note}", markup=False, soft_wrap=True)


def write_json(data: dict, path: str) -> None:
    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def render_html(data: dict) -> str:
    """An offline page: the Pareto plot (bench's chart code) and every trial."""
    from sparkserve.bench.html import CSS, chart

    measured = [(lv["per_request_tps"], lv["output_tps"]) for t in data["trials"] if t.get("status") == "measured"
                for lv in t.get("levels", []) if lv.get("per_request_tps")]
    front = [(p["per_request_tps"], p["aggregate_tps"]) for p in data["pareto"]]
    plot = chart("Per-request against aggregate output tok/s", [("every measured load", measured),
                                                                ("Pareto front", front)],
                 "tok/s per request", "aggregate output tok/s", scatter=True)
    rows = []
    for t in data["trials"]:
        level = t.get("measured") or {}
        cause = t.get("cause_id") or t.get("reason") or ""
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
            t["id"], _args_text(t["args"], data["space"]), t["status"], cause,
            (t.get("predicted") or {}).get("max_load") or "-", t.get("load") or "-",
            level.get("goodput_rps", "-"), level.get("output_tps", "-"), level.get("per_request_tps", "-"))) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("id", "configuration", "status", "cause / reason", "plan: max load",
                                               "load", "goodput req/s", "output tok/s", "tok/s per request"))
    best = data.get("best")
    best_html = (f"<p><b>best</b>: {escape(_args_text(best['args'], data['space']))} at load {best['load']}: goodput "
                 f"{best['measured']['goodput_rps']} req/s, {best['measured']['output_tps']} output tok/s</p>"
                 if best else "<p>no configuration met the SLO</p>")
    slo = ", ".join(f"{k}={v:g}" for k, v in data["slo"].items())
    notes = "".join(f"<p class=\"muted\">note: {escape(n)}</p>" for n in data.get("notes", []))
    body = (f"<h1>sparkserve tune: {escape(data['service'])}</h1><p>SLO {escape(slo)}; plan for "
            f"{escape(data['hardware'])}</p>{best_html}{notes}<h2>Pareto front</h2>{plot}<h2>Trials</h2>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sparkserve tune '
            f"{escape(data['service'])}</title><style>{CSS}</style></head><body>{body}</body></html>\n")


# --- --apply --------------------------------------------------------------------------------------

def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _set_in_table(lines: list[str], header: str, values: dict) -> list[str]:
    """Set keys in a `[table]` of the file, keeping every other line (and comment) as it is."""
    import re

    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        return [*lines, *([""] if lines and lines[-1].strip() else []), header,
                *(f"{k} = {_toml_value(v)}" for k, v in values.items())]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    out = list(lines)
    last = start
    for i in range(start + 1, end):
        if out[i].strip():
            last = i
    todo = dict(values)
    for i in range(start + 1, end):
        found = re.match(r"^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)(.*?)(\s*#.*)?$", out[i])
        if found and found.group(2) in todo:
            comment = found.group(5) or ""
            out[i] = f"{found.group(1)}{found.group(2)}{found.group(3)}{_toml_value(todo.pop(found.group(2)))}{comment}"
    added = [f"{k} = {_toml_value(v)}" for k, v in todo.items()]
    return out[:last + 1] + added + out[last + 1:]


def apply(data: dict, stack_path: Path, engine_name: str, console: Console) -> bool:
    """Write the best configuration into the stack file (a backup first, then an atomic replace) and
    print the diff. Returns whether the file changed."""
    from sparkserve.stack.load import parse_stack
    from sparkserve.tune.space import engine_module

    best = data.get("best")
    if not best:
        raise UserError("--apply: no configuration met the SLO, so nothing was written; relax --slo or widen --space")
    service = data["service"]
    stack_args, env = engine_module(engine_name).tune_overrides(best["args"])
    old = stack_path.read_text(encoding="utf-8")
    if _inline_table(old, service, "args") or (env and _inline_table(old, service, "env")):
        raise UserError(f"--apply: {stack_path} writes services.{service}'s args or env inline ({{ ... }}); "
                        f"move them to [services.{service}.args] / [services.{service}.env] tables, or set "
                        f"{_label(best['args'])} by hand")
    lines = old.splitlines()
    lines = _set_in_table(lines, f"[services.{service}.args]", stack_args)
    if env:
        lines = _set_in_table(lines, f"[services.{service}.env]", env)
    new = "\n".join(lines) + "\n"
    if new == old:
        console.print(f"{stack_path} already holds the best configuration; nothing changed")
        return False
    spec = parse_stack(new, str(stack_path))
    written = spec.services[service].args
    if any(written.get(k) != v for k, v in stack_args.items()):
        raise UserError(f"--apply: could not write the arguments into {stack_path} cleanly; nothing was changed")
    backup = stack_path.with_name(stack_path.name + ".bak")
    shutil.copy2(stack_path, backup)
    tmp = stack_path.with_name(f".{stack_path.name}.tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    shutil.copymode(stack_path, tmp)
    os.replace(tmp, stack_path)
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(backup), str(stack_path), lineterm="")
    for line in diff:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, markup=False, highlight=False)
    console.print(f"applied the best configuration to {stack_path} (the previous file is {backup})")
    return True


def _label(args: dict) -> str:
    from sparkserve.tune.space import Candidate

    return Candidate(args).label()


def _inline_table(text: str, service: str, key: str) -> bool:
    """Does the service write `key = { ... }` inline in its own table?"""
    import tomllib

    lines = text.splitlines()
    header = f"[services.{service}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        return False
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    block = "\n".join(lines[start + 1:end])
    try:
        return key in tomllib.loads(block)
    except tomllib.TOMLDecodeError:
        return False

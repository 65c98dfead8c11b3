"""`sparkserve tune` against a full grid of the same space on the CPU vLLM; writes docs/tune.md.

    flock /tmp/sparkserve-e2e.lock python benchmarks/tune_vs_grid.py [--num-prompts 48]

One CPU vLLM (scripts/setup-vllm-cpu.sh) serves the tiny local model through a native stack.
Both searches use the same space, SLO, workload and load-level measurement (sparkserve bench's
client, metrics and goodput):

- grid, in the manner of vLLM's benchmarks/auto_tune: start every configuration, raise the load
  one step at a time from 1 until the SLO breaks (or the configuration's max-num-seqs); best =
  highest goodput, then output tok/s.
- tune: the same configurations planned first, measured most promising first, the load
  bracketed from the plan's (corrected) guess then bisected and the chosen load measured once
  more, and configurations that earlier measurements already decide are not started.

Both keep, for each configuration, the load it measured with the highest goodput under the SLO
(sparkserve.tune.trial.LevelSearch.best): goodput need not grow with load.

Then the best configuration tune chose is started again and re-measured independently with
`vllm bench serve` (in the CPU vLLM's venv) at the load tune chose; its p90 TTFT and ITL are held
against the SLO. The run's numbers go to benchmarks/data/tune-vs-grid.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from sparkserve.demo.stack import SERVED_NAME, SERVICE, demo_stack_text

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tune.md"
RUNS = ROOT / "benchmarks" / "data" / "tune-vs-grid.json"
GOODPUT_WITHIN_PCT = 5.0  # the target: tune's best goodput within 5 % of the grid's best
TIME_SHARE = 0.5  # ... using at most half the grid's wall time
SLO = "ttft_p90_ms=1000,itl_p90_ms=150"
SPACE = ("max-num-seqs=2,4,8", "max-num-batched-tokens=256,2048")
# The demo's native CPU stack (sparkserve.demo.stack), and VLLM_ENABLE_V1_MULTIPROCESSING=0: it keeps the
# model in the engine-core process on the CPU platform, which streams token by token on two cores
# (docs/bench-agreement.md explains the other mode).
STACK_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search(stack: Path, args: argparse.Namespace, *, grid: bool) -> tuple[dict, float]:
    from sparkserve.tune.predict import WorkloadShape
    from sparkserve.tune.search import Request, prepare, run
    from sparkserve.tune.trial import Measure

    request = Request(stack_file=str(stack), service=SERVICE, slo=args.slo,
                      shape=WorkloadShape(prompt_len=args.prompt_len, output_len=args.output_len),
                      measure=Measure(num_prompts=args.num_prompts, start_timeout_s=600, poll_s=0.5),
                      space=args.space, grid=grid,
                      journal=str(stack.parent / f"{'grid' if grid else 'tune'}.jsonl"))
    began = time.monotonic()
    prepared = prepare(request)
    result = run(prepared, lambda line: print(("grid " if grid else "tune ") + line, flush=True))
    return result, time.monotonic() - began


def vllm_bench(venv: Path, stack: Path, best: dict, args: argparse.Namespace, out_dir: Path) -> dict:
    """Start the best configuration with `sparkserve up`, measure it with `vllm bench serve`, stop it."""
    from sparkserve.tune.report import apply

    class Quiet:
        def print(self, *a, **k) -> None:
            pass

    copy = out_dir / "best" / "sparkserve.toml"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(stack.read_text())
    apply({"service": SERVICE, "best": best}, copy, "vllm", Quiet())  # type: ignore[arg-type]
    cli = [sys.executable, "-m", "sparkserve.cli"]
    env = os.environ | {"SPARKSERVE_POLL_S": "0.5"}
    up = subprocess.run([*cli, "up", "--stack", str(copy)], capture_output=True, text=True, env=env, timeout=900,
                        check=False)
    if up.returncode != 0:
        raise RuntimeError(f"sparkserve up failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
    port = tomllib.loads(copy.read_text())["services"][SERVICE]["port"]
    try:
        name = "vllm-bench.json"
        slo = dict(part.split("=") for part in args.slo.split(","))
        cmd = [str(venv / "bin" / "vllm"), "bench", "serve", "--backend", "openai-chat", "--endpoint",
               "/v1/chat/completions", "--base-url", f"http://127.0.0.1:{port}", "--model", SERVED_NAME,
               "--tokenizer", str(args.model_dir), "--dataset-name", "random", "--random-input-len",
               str(args.prompt_len), "--random-output-len", str(args.output_len), "--random-range-ratio", "0",
               "--num-prompts", str(args.num_prompts), "--max-concurrency", str(best["load"]), "--ignore-eos",
               "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "90",
               "--goodput", f"ttft:{slo['ttft_p90_ms']}", "--seed", "7", "--disable-tqdm", "--save-result",
               "--result-dir", str(out_dir), "--result-filename", name]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False,
                              env=os.environ | {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"vllm bench serve failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        data = json.loads((out_dir / name).read_text())
    finally:
        subprocess.run([*cli, "down", "--stack", str(copy)], capture_output=True, text=True, timeout=120, check=False)
    ttft, itl = data["p90_ttft_ms"], data["p90_itl_ms"]
    return {"load": best["load"], "completed": data["completed"], "p90_ttft_ms": ttft, "p90_itl_ms": itl,
            "output_throughput": data["output_throughput"], "request_goodput": data.get("request_goodput"),
            "slo": args.slo, "meets_slo": ttft <= float(slo["ttft_p90_ms"]) and itl <= float(slo["itl_p90_ms"])}


def _started(result: dict) -> int:
    return sum(1 for t in result["trials"] if t["status"] in ("measured", "failed"))


def _levels(result: dict) -> int:
    return sum(len(t.get("levels", [])) for t in result["trials"])


def _row(t: dict) -> str:
    from sparkserve.tune.space import Candidate

    args = {k: t["args"][k] for k in ("max_num_seqs", "max_num_batched_tokens")}
    m = t.get("measured") or {}
    how = t["status"] + (f" (by {t['by']})" if t.get("by") else "")
    good = f"{m['goodput_rps']:.2f}" if m else "-"
    tps = f"{m['output_tps']:.0f}" if m else "-"
    return f"| {Candidate(args).label()} | {how} | {t.get('load') or '-'} | {good} | {tps} |"


def write_doc(run: dict, out: Path = DOC) -> None:
    tune, grid, check = run["tune"], run["grid"], run["vllm_bench"]
    tb, gb = tune["best"], grid["best"]
    ratio = tb["measured"]["goodput_rps"] / gb["measured"]["goodput_rps"]
    share = run["tune_wall_s"] / run["grid_wall_s"]
    ok_goodput = ratio >= 1 - GOODPUT_WITHIN_PCT / 100
    ok_time = share <= TIME_SHARE
    lines = [
        "# sparkserve tune against a full grid",
        "",
        ("Written by `benchmarks/tune_vs_grid.py` from one run "
        f"({run['created_at']}, {run['host']}, vLLM {run['vllm']} on the CPU serving the tiny random-weight "
        "Qwen3 of `sparkserve demo`, planned as a DGX Spark). Numbers: `benchmarks/data/tune-vs-grid.json`."),
        "",
        (f"SLO `{run['slo']}`; workload random, {run['prompt_len']} prompt + {run['output_len']} output tokens, "
        f"{run['num_prompts']} requests per load level (at least twice the load); space "
        f"`{' '.join('--space ' + s for s in run['space'])}` ({len(grid['trials'])} configurations)."),
        "",
        ("- **grid** (the manner of vLLM's `benchmarks/auto_tune`): every configuration started, the load raised "
        "one step at a time from 1 until the SLO broke or max-num-seqs was reached."),
        ("- **tune**: `sparkserve tune` over the same space: planned, most promising first, load bracketed "
        "from the plan's corrected guess then bisected, the chosen load measured once more; configurations "
        "already decided by a measurement are not started."),
        ("Both keep, for each configuration, the load it measured with the highest goodput under the SLO "
        "(goodput need not grow with load)."),
        "",
        "| | grid | tune |",
        "|---|---|---|",
        f"| wall time | {run['grid_wall_s']:.0f} s | {run['tune_wall_s']:.0f} s ({share:.0%} of the grid's) |",
        f"| engines started | {_started(grid)} | {_started(tune)} |",
        f"| load levels measured | {_levels(grid)} | {_levels(tune)} |",
        f"| best configuration | {_row_label(gb)} at load {gb['load']} | {_row_label(tb)} at load {tb['load']} |",
        (f"| best goodput (req/s) | {gb['measured']['goodput_rps']:.2f} | {tb['measured']['goodput_rps']:.2f} "
        f"({ratio:.1%} of the grid's) |"),
        f"| best output tok/s | {gb['measured']['output_tps']:.0f} | {tb['measured']['output_tps']:.0f} |",
        "",
        (f"Verdict: tune's best goodput is {ratio:.1%} of the grid's (target: at least "
        f"{100 - GOODPUT_WITHIN_PCT:.0f} %): **{'met' if ok_goodput else 'missed'}**; tune took {share:.0%} of the "
        f"grid's wall time (target: at most {TIME_SHARE:.0%}): **{'met' if ok_time else 'missed'}**."),
        "",
        "## Re-measured with `vllm bench serve`",
        "",
        (f"The best configuration tune chose, started again with `sparkserve up` and measured by vLLM's own "
        f"client at the load tune chose (`--max-concurrency {check['load']}`, {check['completed']} requests): "
        f"p90 TTFT {check['p90_ttft_ms']:.1f} ms, p90 ITL {check['p90_itl_ms']:.2f} ms, "
        f"{check['output_throughput']:.0f} output tok/s. Against the SLO: "
        f"**{'met' if check['meets_slo'] else 'missed'}**."),
        "",
        "## Every trial",
        "",
        "grid:",
        "",
        "| configuration | status | load | goodput req/s | output tok/s |",
        "|---|---|---|---|---|",
        *(_row(t) for t in grid["trials"]),
        "",
        "tune (in the order it went):",
        "",
        "| configuration | status | load | goodput req/s | output tok/s |",
        "|---|---|---|---|---|",
        *(_row(t) for t in tune["trials"]),
        "",
        *(f"- {t['id']}: {t['reason']}" for t in tune["trials"] if t.get("reason")),
        *(f"- note: {n}" for n in tune.get("notes", [])),
        "",
        *_findings(run),
        ("Caveats: two shared CPU cores make every measurement noisy; the grid's best is the highest of "
        "several noisy measurements of configurations that behave alike, which favours the grid. The plan "
        "is a DGX Spark's, so its absolute numbers are far from this CPU: tune uses it to order and to "
        "bracket, and corrects its load guess by what the first trial measured."),
        "",
    ]
    out.write_text("\n".join(lines))


def _findings(run: dict) -> list[str]:
    """What the run's own numbers say about noise and about goodput against load."""
    from sparkserve.tune.space import config_id

    out = []
    seen: dict[tuple[str, int], list[float]] = {}
    for search in (run["tune"], run["grid"]):
        for t in search["trials"]:
            for lv in t.get("levels", []):
                seen.setdefault((config_id(t["args"]), lv["load"]), []).append(lv["goodput_rps"])
                if lv.get("repeat"):
                    seen[(config_id(t["args"]), lv["load"])].append(lv["repeat"]["goodput_rps"])
    spread = [(min(v), max(v)) for v in seen.values() if len(v) > 1 and min(v) > 0]
    if spread:
        worst = max(spread, key=lambda lo_hi: lo_hi[1] / lo_hi[0])
        out.append(f"- Noise: {len(spread)} (configuration, load) pairs were measured more than once in this run; "
                   f"their goodput differed by up to {worst[1] / worst[0]:.1f}x ({worst[0]:.1f} vs {worst[1]:.1f} "
                   "req/s), far more than the 5 % the comparison asks for.")
    falling = []
    for t in run["grid"]["trials"]:
        levels = sorted((lv for lv in t.get("levels", []) if lv["meets_slo"]), key=lambda lv: lv["load"])
        peak = max(levels, key=lambda lv: lv["goodput_rps"], default=None)
        if peak and levels and peak["load"] < levels[-1]["load"]:
            falling.append((t["args"]["max_num_seqs"], t["args"]["max_num_batched_tokens"], peak, levels[-1]))
    if falling:
        mns, mnbt, peak, last = falling[0]
        out.append(f"- Goodput does not always grow with load here: in {len(falling)} grid configuration(s) it peaked "
                   f"below the highest load that met the SLO (max-num-seqs {mns}, max-num-batched-tokens {mnbt}: "
                   f"{peak['goodput_rps']:.1f} req/s at load {peak['load']}, {last['goodput_rps']:.1f} at load "
                   f"{last['load']}). This is why both searches keep a configuration's best measured load, not "
                   "its highest, and why tune calls a configuration with a lower max-num-seqs dominated only where "
                   "the measured one was measured at that load and gave no more there than its best.")
    return [*out, ""] if out else []


def _row_label(best: dict) -> str:
    from sparkserve.tune.space import Candidate

    return Candidate({k: best["args"][k] for k in ("max_num_seqs", "max_num_batched_tokens")}).label()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # so the running trial stops its engine


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--slo", default=SLO)
    parser.add_argument("--space", action="append", help="KEY=v1,v2 (repeatable; default: " + " ".join(SPACE) + ")")
    parser.add_argument("--out", type=Path, default=DOC, help="where the doc goes")
    parser.add_argument("--from-runs", help="write the doc again from a saved run, measuring nothing")
    parser.add_argument("--recheck", action="store_true", help="only the `vllm bench serve` check of the saved run")
    args = parser.parse_args()
    args.space = tuple(args.space or SPACE)
    if args.from_runs:
        write_doc(json.loads(Path(args.from_runs).read_text()), args.out)
        return
    venv = Path(subprocess.run(["bash", str(ROOT / "scripts/setup-vllm-cpu.sh")], capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1])
    from sparkserve.demo import write_tiny_model

    runs = RUNS if args.out == DOC else args.out.with_suffix(".json")
    with tempfile.TemporaryDirectory(prefix="tune-vs-grid-") as tmp:
        work = Path(tmp)
        args.model_dir = write_tiny_model(work / "model")
        stacks = {}
        for kind in ("grid", "tune"):
            stacks[kind] = work / kind / "sparkserve.toml"
            stacks[kind].parent.mkdir()
            stacks[kind].write_text(demo_stack_text(args.model_dir, str(venv / "bin" / "vllm"), free_port(),
                                                    env=STACK_ENV))
        if args.recheck:
            run = json.loads(runs.read_text())
        else:
            tune, tune_s = search(stacks["tune"], args, grid=False)
            grid, grid_s = search(stacks["grid"], args, grid=True)
            version = subprocess.run([str(venv / "bin" / "python"), "-c", "import vllm; print(vllm.__version__)"],
                                     capture_output=True, text=True, check=False).stdout.strip()
            run = {"created_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "host": f"{platform.machine()}, {os.cpu_count()} cores", "vllm": version, "slo": args.slo,
                   "space": args.space, "prompt_len": args.prompt_len, "output_len": args.output_len,
                   "num_prompts": args.num_prompts, "grid_wall_s": round(grid_s, 1), "tune_wall_s": round(tune_s, 1),
                   "grid": grid, "tune": tune, "vllm_bench": None}
            runs.parent.mkdir(parents=True, exist_ok=True)
            runs.write_text(json.dumps(run, indent=1, default=str) + "\n")
        if not run["tune"]["best"] or not run["grid"]["best"]:
            raise SystemExit(f"no configuration met the SLO; nothing to compare (see {runs})")
        try:
            run["vllm_bench"] = vllm_bench(venv, stacks["tune"], run["tune"]["best"], args, work)
        finally:
            runs.write_text(json.dumps(run, indent=1, default=str) + "\n")
    write_doc(run, args.out)
    print(f"wrote {args.out} and {runs}")


if __name__ == "__main__":
    main()

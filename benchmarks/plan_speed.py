"""Cold-start wall time of `sparkserve --help` and `sparkserve plan`; writes docs/plan-speed.md.

    python benchmarks/plan_speed.py [--runs 15]

Each run is a fresh process (no warm interpreter), timed from spawn to exit. Target: `plan`
<= 300 ms wall. Python's bytecode cache is on, as for an installed copy (pip compiles the .pyc files at
install; an editable install writes them on first import), kept in a temporary folder (PYTHONPYCACHEPREFIX)
so that the tree gets no __pycache__. The last column times the same command with sparkserve's own modules
left out of that cache and PYTHONDONTWRITEBYTECODE=1 (a shell that sets it, as this project's sandboxes do):
every start compiles sparkserve's sources again.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 300
COMMANDS = {
    "sparkserve --help": ["--help"],
    "sparkserve plan": ["plan"],
    "sparkserve plan --json": ["plan", "--json"],
    "sparkserve plan -m openai/gpt-oss-120b -H dgx-spark": ["plan", "-m", "openai/gpt-oss-120b", "-H", "dgx-spark"],
    # a Hub repo planned a second time: its metadata (config, weight bytes by group) from sparkserve's cache, offline
    "sparkserve plan -m bench/Cached-Hub-Repo --offline": ["plan", "-m", "bench/Cached-Hub-Repo", "--offline"],
    # the latency/throughput curve: seven levels, each a full speed plan
    "sparkserve plan -m Qwen/Qwen3-32B -H dgx-spark --concurrency 1,2,4,8,16,32,64":
        ["plan", "-m", "Qwen/Qwen3-32B", "-H", "dgx-spark", "--concurrency", "1,2,4,8,16,32,64"],
}
CACHED_REPO = "bench/Cached-Hub-Repo"


def seed_hub_cache(folder: Path) -> None:
    """What a first `plan -m org/name` leaves behind: the Qwen3-Next shape with its weight bytes by group."""
    import json
    from importlib import resources

    from sparkserve.models import hub

    config = json.loads(resources.files("sparkserve.models").joinpath(
        "bundled/Qwen--Qwen3-Next-80B-A3B-Instruct.json").read_text(encoding="utf-8"))
    groups = {"attention": 4_000_000_000, "experts": 150_000_000_000, "embedding": 622_329_856}
    os.environ["SPARKSERVE_MODELS_CACHE"] = str(folder)
    hub._store(hub.RepoMetadata(CACHED_REPO, "main", "0" * 40, config, {}, groups, source="benchmark"))


def executable() -> str:
    found = Path(sys.executable).with_name("sparkserve")
    return str(found) if found.exists() else (shutil.which("sparkserve") or "sparkserve")


def _run(argv: list[str], env: dict) -> None:
    """One run; exit 3 (the plan does not fit) is an answer, anything else but 0 a failure."""
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env(pycache: Path, *, write: bool = True) -> dict[str, str]:
    """The environment of a timed run: bytecode read from (and written to) `pycache`, not the tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env.update(COLUMNS="100", PYTHONPYCACHEPREFIX=str(pycache))
    return env if write else dict(env, PYTHONDONTWRITEBYTECODE="1")


def without_sparkserve(pycache: Path) -> Path:
    """A copy of the warm bytecode cache less sparkserve's own modules: the standard library and the
    dependencies stay compiled, sparkserve's sources compile at every start (PYTHONDONTWRITEBYTECODE=1)."""
    import sparkserve

    package = Path(sparkserve.__file__).resolve().parent
    copy = pycache.with_name("pycache-without-sparkserve")
    shutil.copytree(pycache, copy)
    shutil.rmtree(copy / package.relative_to(package.anchor), ignore_errors=True)
    return copy


def time_runs(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per run. On a machine shared with other work the wall time includes
    waiting for a core; the CPU time of the process (user + system) does not."""
    _run(argv, env)  # page cache (and bytecode cache) warm, as a user's second call
    wall, cpu = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), _child_cpu_s()
        _run(argv, env)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((_child_cpu_s() - cpu_start) * 1000)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "plan-speed.md")
    args = ap.parse_args()
    exe = executable()
    scratch = Path(tempfile.mkdtemp(prefix="sparkserve-plan-speed-"))
    seed_hub_cache(scratch)
    cached = child_env(scratch / "pycache")
    for extra in COMMANDS.values():
        _run([exe, *extra], cached)  # every module any command imports, compiled once into the cache
    compiling = child_env(without_sparkserve(scratch / "pycache"), write=False)
    rows, ok = [], True
    load_before = os.getloadavg()[0]
    for label, extra in COMMANDS.items():
        ms, cpu = time_runs([exe, *extra], args.runs, cached)
        recompiled, _ = time_runs([exe, *extra], args.runs, compiling)
        med, worst = statistics.median(ms), max(ms)
        if label.startswith("sparkserve plan"):
            ok &= med <= TARGET_MS
        rows.append(f"| `{label}` | {med:.0f} | {min(ms):.0f} | {worst:.0f} | {statistics.median(cpu):.0f} "
                    f"| {statistics.median(recompiled):.0f} |")
        print(f"{label}: median {med:.0f} ms wall, {statistics.median(cpu):.0f} ms CPU; "
              f"{statistics.median(recompiled):.0f} ms compiling sparkserve's sources")
    load = max(load_before, os.getloadavg()[0])
    shutil.rmtree(scratch, ignore_errors=True)
    text = "\n".join([
        "# Command-line start-up time", "",
        (f"Written by `benchmarks/plan_speed.py`: {args.runs} fresh processes per command on "
         f"{platform.machine()} ({os.cpu_count()} cores), Python {platform.python_version()}. Target for `plan`: "
         f"<= {TARGET_MS} ms wall. Load average during the runs: {load:.1f} "
         f"({'busy: wall times include waiting for a core' if load > (os.cpu_count() or 1) else 'quiet'}). "
         "Bytecode cached, as an installed copy runs; the last column compiles sparkserve's own sources at "
         "every start (PYTHONDONTWRITEBYTECODE=1, the rest still cached)."), "",
        "| command | median ms | min ms | max ms | median CPU ms | median ms, PYTHONDONTWRITEBYTECODE=1 |",
        "|---|---|---|---|---|---|", *rows, "",
        f"Target {'met' if ok else 'NOT met'}.",
    ]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

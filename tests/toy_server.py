"""The toy engine's server (tests/toy_engine.py): the OpenAI API on 127.0.0.1, streamed or whole,
/healthz, and Prometheus /metrics under its own names, as two data-parallel ranks.

`toy-serve --model M --max-model-len N --slots S --served-name NAME --host H --port P`
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web


class Counts:
    def __init__(self) -> None:
        self.running = 0
        self.prompt = 0
        self.generated = 0


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def build_app(args: argparse.Namespace) -> web.Application:
    counts = Counts()
    name = args.served_name or args.model

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "owned_by": "toy", "root": args.model,
             "max_model_len": args.max_model_len}]})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = request.path.endswith("chat/completions")
        if body.get("model") != name:
            return web.json_response({"error": {"message": f"no model {body.get('model')!r}"}}, status=404)
        prompt = body.get("messages") if chat else body.get("prompt")
        prompt_tokens = max(1, len(json.dumps(prompt)) // 4)
        total = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        counts.running += 1
        counts.prompt += prompt_tokens
        try:
            if not body.get("stream"):
                counts.generated += total
                text = " tok" * total
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message} if chat else {"index": 0, "text": text}
                return web.json_response({"id": "toy", "object": "completion", "model": name, "choices": [choice],
                                          "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                                                    "total_tokens": prompt_tokens + total}})
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for _ in range(total):
                await asyncio.sleep(0.002)
                counts.generated += 1
                choice = {"index": 0, "delta": {"content": " tok"}} if chat else {"index": 0, "text": " tok"}
                await response.write(_sse({"id": "toy", "object": "chunk", "model": name, "choices": [choice]}))
            if usage:
                counted = {"prompt_tokens": prompt_tokens, "completion_tokens": total,
                           "total_tokens": prompt_tokens + total}
                await response.write(_sse({"id": "toy", "choices": [], "usage": counted}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        finally:
            counts.running -= 1

    async def metrics(request: web.Request) -> web.Response:
        # Two ranks: rank 0 holds everything, rank 1 is idle, so KV usage reads as their mean.
        half = counts.generated / (args.slots * args.max_model_len)
        lines = [
            "# TYPE toy:running gauge",
            f'toy:running{{rank="0"}} {counts.running}',
            'toy:running{rank="1"} 0',
            "# TYPE toy:generated_tokens counter",
            f'toy:generated_tokens_total{{rank="0"}} {counts.generated}',
            'toy:generated_tokens_total{rank="1"} 0',
            "# TYPE toy:prompt_tokens counter",
            f'toy:prompt_tokens_total{{rank="0"}} {counts.prompt}',
            "# TYPE toy:kv_used_perc gauge",
            f'toy:kv_used_perc{{rank="0"}} {min(1.0, half)}',
            'toy:kv_used_perc{rank="1"} 0.5',
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", complete)
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/metrics", metrics)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="toy-serve")
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-name")
    parser.add_argument("--max-model-len", type=int, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(f"toy: serving {args.model} on {args.host}:{args.port}", flush=True)
    web.run_app(build_app(args), host=args.host, port=args.port, print=None, handle_signals=True, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()

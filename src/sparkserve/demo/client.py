"""What the demo asks the running engine: chat completions (whole and streamed), /metrics, and a
few timed requests when `sparkserve bench` offers no API to call.

The tiny model has random weights: its replies are noise and it rarely emits an end token, so
every request sets max_tokens, and timed requests set ignore_eos (a vLLM extension) so each
one produces exactly the tokens asked for. Greedy decoding of random weights repeats one token
(tied embeddings point back at the input), so chats sample at temperature 1 with a fixed seed.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import httpx

from sparkserve.readings.metrics import Metrics, aliases_for, read_text

PROMPT = "In one sentence: what does a KV cache hold?"
SAMPLING = {"temperature": 1.0, "seed": 0}


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    ttft_s: float | None = None  # streamed only: time to the first content chunk
    chunks: int = 0


def chat(client: httpx.Client, model: str, *, max_tokens: int, prompt: str = PROMPT) -> Reply:
    """One chat completion, whole."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, **SAMPLING}
    began = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    data = response.json()
    usage = data.get("usage") or {}
    return Reply(
        text=data["choices"][0]["message"].get("content") or "",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        seconds=time.perf_counter() - began,
    )


def chat_stream(
    client: httpx.Client, model: str, *, max_tokens: int, prompt: str = PROMPT, on_text=None, ignore_eos: bool = False
) -> Reply:
    """One streamed chat completion (SSE); the final chunk carries usage (include_usage)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        **SAMPLING,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True
    began = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage: dict = {}
    chunks = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if text:
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - began
                    parts.append(text)
                    if on_text:
                        on_text(text)
    return Reply(
        text="".join(parts),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        seconds=time.perf_counter() - began,
        ttft_s=first,
        chunks=chunks,
    )


# --- /metrics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSummary:
    """Key engine counters, summed over engines and labels; None = not exposed by this release."""

    requests_ok: float | None
    prompt_tokens: float | None
    generation_tokens: float | None
    ttft_mean_s: float | None
    e2e_mean_s: float | None
    kv_cache_usage: float | None
    prefix_cache_hits: float | None
    prefix_cache_queries: float | None
    families: int


def metric_sums(client: httpx.Client, engine: str = "") -> Metrics:
    """GET the engine's /metrics, read by readings/metrics.py (counters and histograms summed over engines)."""
    response = client.get("/metrics")
    response.raise_for_status()
    return sums_from_text(response.text, engine)


def sums_from_text(text: str, engine: str = "") -> Metrics:
    """Prometheus text read with the engine's metric names (every registered engine's when unnamed)."""
    return read_text(text, aliases_for(engine))


def summarize_metrics(m: Metrics) -> MetricsSummary:
    """The readings the demo shows, from metric_sums()."""
    return MetricsSummary(
        requests_ok=m.counter("request_success_total"),
        prompt_tokens=m.counter("prompt_tokens_total"),
        generation_tokens=m.counter("generation_tokens_total"),
        ttft_mean_s=m.mean("time_to_first_token_seconds"),
        e2e_mean_s=m.mean("e2e_request_latency_seconds"),
        kv_cache_usage=m.gauge("kv_cache_usage_perc"),
        prefix_cache_hits=m.counter("prefix_cache_hits_total"),
        prefix_cache_queries=m.counter("prefix_cache_queries_total"),
        families=m.families,
    )


@dataclass(frozen=True)
class ServerTiming:
    """vLLM's own timings of the requests between two /metrics reads (histogram sums and counts).

    On a busy 2-core CPU the API server often sends a request's chunks in one burst, so
    client-side gaps between chunks read as zero; the engine's per-request figures do not.
    """

    requests: int
    ttft_mean_ms: float | None
    decode_tps: float | None  # 1 / mean time per output token of each request
    generated_tokens: float | None


def server_timing(before: Metrics, after: Metrics) -> ServerTiming:
    def delta(values_before: dict[str, float], values_after: dict[str, float], reading: str) -> float | None:
        a, b = values_before.get(reading), values_after.get(reading)
        return None if a is None or b is None else b - a

    def mean(reading: str) -> float | None:
        total, count = delta(before.sums, after.sums, reading), delta(before.counts, after.counts, reading)
        return total / count if total is not None and count else None

    ttft, tpot = mean("time_to_first_token_seconds"), mean("request_time_per_output_token_seconds")
    count = delta(before.counts, after.counts, "time_to_first_token_seconds")
    return ServerTiming(
        requests=int(count or 0),
        ttft_mean_ms=ttft * 1000 if ttft is not None else None,
        decode_tps=1 / tpot if tpot else None,
        generated_tokens=delta(before.counters, after.counters, "generation_tokens_total"),
    )


# --- a short timing when no bench API exists ----------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    requests: int
    output_tokens: int
    ttft_median_ms: float  # client side: to the first streamed chunk
    total_tps: float  # all generated tokens / wall time


def time_requests(client: httpx.Client, model: str, *, requests: int, output_tokens: int) -> Timing:
    """`requests` sequential streamed chats of exactly `output_tokens` tokens each."""
    ttfts, generated = [], 0
    began = time.perf_counter()
    for _ in range(requests):
        reply = chat_stream(client, model, max_tokens=output_tokens, ignore_eos=True)
        generated += reply.completion_tokens
        if reply.ttft_s is not None:
            ttfts.append(reply.ttft_s)
    wall = time.perf_counter() - began
    return Timing(
        requests=requests,
        output_tokens=output_tokens,
        ttft_median_ms=statistics.median(ttfts) * 1000 if ttfts else float("nan"),
        total_tps=generated / wall if wall > 0 else float("nan"),
    )

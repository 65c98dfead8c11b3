"""Read an engine that serves Prometheus metrics (vLLM): health, its model and /metrics, and turn
two reads into rates.

Metric names come from the engine's alias table (`Engine.metric_aliases`) so a server of an
older or newer release still reads. A reading the server does not expose stays None (n/a);
a server that does not answer gives a sample with `healthy=False` and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import httpx

from sparkserve.readings.metrics import Aliases, aliases_for, read_text


@dataclass(frozen=True)
class VllmSample:
    """One read of a vLLM server at `at` (time.monotonic()); None = not exposed or not reachable."""

    at: float
    healthy: bool
    error: str | None = None
    model: str | None = None
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    kv_cache_tokens: int | None = None  # cache_config_info: num_gpu_blocks x block_size

    def gauge(self, name: str) -> float | None:
        return self.gauges.get(name)


@dataclass(frozen=True)
class VllmRates:
    """Counter deltas between two samples divided by the time between them."""

    interval_s: float | None = None
    generation_tps: float | None = None
    prompt_tps: float | None = None
    prefix_cache_hit_rate: float | None = None  # hits / queries over the interval (0-1)
    preemptions: float | None = None  # preemptions during the interval
    requests_per_s: float | None = None


def sample_from_text(text: str, at: float, healthy: bool = True, model: str | None = None,
                     aliases: Aliases | None = None) -> VllmSample:
    """A sample from /metrics text, read with readings/metrics.py (its definitions: counters summed
    over engines, fractions such as KV-cache usage their mean). `aliases`: the engine's names;
    None reads every registered engine's."""
    reading = read_text(text, aliases if aliases is not None else aliases_for(""), at)
    return VllmSample(at=at, healthy=healthy, model=model or reading.model, gauges=dict(reading.gauges),
                      counters=dict(reading.counters), kv_cache_tokens=reading.kv_cache_tokens)


def read_vllm(client: httpx.Client, base_url: str, at: float, api_key: str | None = None,
              engine: str = "") -> VllmSample:
    """The engine's health path then its metrics (both open even with an API key); /v1/models only
    when the metrics name no model."""
    from sparkserve.engines import find_engine

    found = find_engine(engine)
    health_path = found.health_path if found else "/health"
    metrics_path = (found.metrics_path if found else None) or "/metrics"
    try:
        health = client.get(base_url + health_path)
    except httpx.HTTPError as exc:
        return VllmSample(at=at, healthy=False, error=_why(exc))
    healthy = health.status_code == 200
    try:
        metrics = client.get(base_url + metrics_path)
        text = metrics.text if metrics.status_code == 200 else ""
    except httpx.HTTPError:
        text = ""
    try:
        sample = sample_from_text(text, at, healthy, aliases=aliases_for(engine))
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # not Prometheus text: another server on this port
        return VllmSample(at=at, healthy=healthy, error=f"{metrics_path} unreadable: {exc}")
    if sample.model is None:
        sample = replace(sample, model=_served_model(client, base_url, api_key))
    return replace(sample, error=None if healthy else f"{health_path} answered {health.status_code}")


def _served_model(client: httpx.Client, base_url: str, api_key: str | None) -> str | None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        data = client.get(base_url + "/v1/models", headers=headers).json().get("data") or []
        return str(data[0]["id"]) if data else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "not listening"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer (timeout)"
    return type(exc).__name__


def rates(previous: VllmSample | None, current: VllmSample) -> VllmRates:
    """Rates over the last interval; n/a across a restart (a counter went down) or without two reads."""
    if previous is None or not current.counters or not previous.counters:
        return VllmRates()
    dt = current.at - previous.at
    if dt <= 0:
        return VllmRates()

    def delta(name: str) -> float | None:
        a, b = previous.counters.get(name), current.counters.get(name)
        if a is None or b is None or b < a:
            return None
        return b - a

    def per_s(name: str) -> float | None:
        d = delta(name)
        return d / dt if d is not None else None

    queries, hits = delta("prefix_cache_queries_total"), delta("prefix_cache_hits_total")
    hit_rate = hits / queries if queries and hits is not None else current.gauge("prefix_cache_hit_rate")
    return VllmRates(
        interval_s=dt,
        generation_tps=per_s("generation_tokens_total"),
        prompt_tps=per_s("prompt_tokens_total"),
        prefix_cache_hit_rate=hit_rate,
        preemptions=delta("num_preemptions_total"),
        requests_per_s=per_s("request_success_total"),
    )

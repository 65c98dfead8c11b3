"""Read a vLLM server: /health, its model and /metrics, and turn two reads into rates.

Metric names come from one alias table (`engines.vllm.METRIC_ALIASES`) so a server of an
older or newer release still reads. A reading the server does not expose stays None (n/a);
a server that does not answer gives a sample with `healthy=False` and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import httpx

from sparkserve.engines.vllm import HEALTH_PATH, METRIC_ALIASES, METRICS_PATH

Samples = dict[str, list[tuple[dict[str, str], float]]]

GAUGES_SUMMED = ("num_requests_running", "num_requests_waiting", "num_requests_swapped")
GAUGES_AVERAGED = ("kv_cache_usage_perc", "cpu_cache_usage_perc", "prefix_cache_hit_rate")
COUNTERS = ("prompt_tokens_total", "generation_tokens_total", "prefix_cache_queries_total",
            "prefix_cache_hits_total", "num_preemptions_total", "request_success_total")


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


READ = frozenset(n for key in (*GAUGES_SUMMED, *GAUGES_AVERAGED, *COUNTERS, "cache_config_info")
                 for n in METRIC_ALIASES[key])


def _needed_lines(text: str, names: frozenset[str]) -> str:
    """Only the samples a reading uses: histograms are most of vLLM's ~600 lines, and a server
    under load answers slowly enough without us parsing what we drop anyway."""
    keep = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=len(line))
            if line[:end] in names:
                keep.append(line)
    return "\n".join(keep) + "\n"


def parse_metrics(text: str, names: frozenset[str] | None = None) -> Samples:
    """Prometheus text -> {sample name: [(labels, value)]}, with prometheus_client's own parser.

    `names` limits the samples read (all when None)."""
    from prometheus_client.parser import text_string_to_metric_families

    if names is not None:
        text = _needed_lines(text, names)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return samples


def lookup(samples: Samples, canonical: str) -> list[tuple[dict[str, str], float]]:
    """The samples of the first alias of `canonical` that the server exposes ([] when none)."""
    for name in METRIC_ALIASES[canonical]:
        if name in samples:
            return samples[name]
    return []


def _sum(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) if values else None


def _kv_cache_tokens(samples: Samples) -> int | None:
    for labels, _ in lookup(samples, "cache_config_info"):
        try:
            return int(labels["num_gpu_blocks"]) * int(labels["block_size"])
        except (KeyError, ValueError):
            continue
    return None


def sample_from_text(text: str, at: float, healthy: bool = True, model: str | None = None) -> VllmSample:
    """A sample from /metrics text; engines (data-parallel ranks) and models are summed or averaged."""
    samples = parse_metrics(text, READ)
    gauges: dict[str, float] = {}
    for name in GAUGES_SUMMED:
        value = _sum(v for _, v in lookup(samples, name))
        if value is not None:
            gauges[name] = value
    for name in GAUGES_AVERAGED:
        values = [v for _, v in lookup(samples, name)]
        if values:
            gauges[name] = sum(values) / len(values)
    counters: dict[str, float] = {}
    for name in COUNTERS:
        value = _sum(v for _, v in lookup(samples, name))
        if value is not None:
            counters[name] = value
    if model is None:
        for name in ("num_requests_running", "generation_tokens_total", "kv_cache_usage_perc"):
            labelled = [labels["model_name"] for labels, _ in lookup(samples, name) if "model_name" in labels]
            if labelled:
                model = labelled[0]
                break
    return VllmSample(at=at, healthy=healthy, model=model, gauges=gauges, counters=counters,
                      kv_cache_tokens=_kv_cache_tokens(samples))


def read_vllm(client: httpx.Client, base_url: str, at: float, api_key: str | None = None) -> VllmSample:
    """/health then /metrics (both open even with an API key); /v1/models only when metrics name no model."""
    try:
        health = client.get(base_url + HEALTH_PATH)
    except httpx.HTTPError as exc:
        return VllmSample(at=at, healthy=False, error=_why(exc))
    healthy = health.status_code == 200
    try:
        metrics = client.get(base_url + METRICS_PATH)
        text = metrics.text if metrics.status_code == 200 else ""
    except httpx.HTTPError:
        text = ""
    try:
        sample = sample_from_text(text, at, healthy)
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # not Prometheus text: another server on this port
        return VllmSample(at=at, healthy=healthy, error=f"/metrics unreadable: {exc}")
    if sample.model is None:
        sample = replace(sample, model=_served_model(client, base_url, api_key))
    return replace(sample, error=None if healthy else f"/health answered {health.status_code}")


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

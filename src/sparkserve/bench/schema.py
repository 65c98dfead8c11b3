"""The versioned JSON result of `sparkserve bench` (`--json FILE`).

Field descriptions carry the metric definitions, so `BenchResult.model_json_schema()` is the
reference a reader of the file needs; docs/bench.md repeats them in prose. Bump SCHEMA_VERSION
when a field changes meaning or goes away (adding a field does not).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

TTFT = "Time to first token (ms): request sent -> first streamed chunk that carries an output token."
TPOT = ("Time per output token (ms) of each request: (E2E - TTFT) / (output tokens - 1), output tokens as the "
        "server counts them; requests with one output token have none.")
ITL = ("Inter-token latency (ms), one value per output token after the first: a chunk carrying n tokens that "
       "arrives g after the previous token chunk contributes n values of g/n; extra tokens of the first chunk "
       "contribute 0. Per request they sum to E2E - TTFT.")
E2E = "End-to-end latency (ms): request sent -> last streamed chunk that carries an output token."


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Model):
    """Statistics of one latency over the requests (or tokens) of a load point; None when empty."""

    count: int = Field(description="Number of values.")
    mean: float | None = Field(description="Arithmetic mean.")
    min: float | None = None
    max: float | None = None
    p50: float | None = Field(
        description="Median (percentiles interpolate linearly, as numpy and vllm bench serve do).")
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class SloResult(_Model):
    slo: str = Field(description="As given, e.g. 'ttft:p95<500ms'.")
    metric: Literal["ttft", "tpot", "itl", "e2e"]
    statistic: Literal["mean", "p50", "p90", "p95", "p99"]
    bound_ms: float
    observed_ms: float | None = Field(description="The statistic over the load point's completed requests.")
    attained: bool = Field(description="observed_ms meets the bound.")
    requests_meeting: int = Field(
        description="Completed requests whose own value meets the bound (ITL: the request's own statistic of its "
                    "ITLs).")


class Summary(_Model):
    """One load point's measurement; only completed requests count in latencies and throughput."""

    completed: int = Field(description="Requests that streamed to their end marker with at least one output token.")
    failed: int = Field(description="Requests that ended with an error (see errors).")
    duration_s: float = Field(description="First measured request sent -> last one finished (warm-up excluded).")
    input_tokens: int = Field(
        description="Prompt tokens of completed requests, as the server counted them (else ours).")
    output_tokens: int = Field(description="Output tokens of completed requests, as the server counted them.")
    request_rate: float = Field(description="Completed requests per second of duration_s.")
    output_tps: float = Field(description="Output tokens per second of duration_s, all requests together.")
    total_tps: float = Field(description="Prompt plus output tokens per second of duration_s.")
    decode_tps: float | None = Field(description="One request's decode speed: 1000 / mean TPOT (tokens/s).")
    mean_concurrency: float = Field(description="Requests in flight on average: sum of request durations / duration_s.")
    ttft_ms: Distribution = Field(description=TTFT)
    tpot_ms: Distribution = Field(description=TPOT)
    itl_ms: Distribution = Field(description=ITL)
    e2e_ms: Distribution = Field(description=E2E)
    goodput_rps: float | None = Field(
        description="Completed requests meeting every --slo (each by its own value), per second; None without "
                    "--slo.")
    good_requests: int | None = Field(description="Completed requests meeting every --slo; None without --slo.")
    slo: list[SloResult] = Field(description="Each --slo, judged over the load point.")
    errors: dict[str, int] = Field(description=(
        "Failed requests by kind: connection_refused, connection_error, http_status, malformed_stream, stream_error, "
        "truncated_stream, empty_stream, timeout, server_died."))
    http_statuses: dict[str, int] = Field(description="Failed requests by HTTP status code.")
    short_outputs: int = Field(
        description="Completed requests with fewer output tokens than asked for (Ollama has no ignore_eos).")


class LoadSpec(_Model):
    mode: Literal["concurrency", "rate"]
    concurrency: int | None = Field(description="Requests in flight (concurrency mode) or the cap on them (rate mode).")
    rate: float | None = Field(description="Request (rate mode: session) arrivals per second.")
    burstiness: float = Field(description="Gamma shape of inter-arrival times; 1.0 is a Poisson process.")
    label: str


class PlanComparison(_Model):
    available: bool
    reason: str | None = Field(default=None, description="Why there is no plan.")
    hardware: str | None = None
    model: str | None = None
    engine: str | None = None
    quant: str | None = None
    batch: int | None = Field(default=None,
        description="Concurrent sequences planned for: the load point's mean concurrency, rounded.")
    predicted_decode_tps: float | None = None
    ceiling_decode_tps: float | None = Field(default=None,
        description="Physical ceiling of one request's decode: spec bandwidth and compute, no overhead.")
    predicted_ttft_ms: float | None = None
    predicted_output_tps: float | None = None
    measured_decode_tps: float | None = None
    measured_ttft_ms: float | None = None
    measured_output_tps: float | None = None
    decode_pct_of_ceiling: float | None = None
    decode_pct_of_plan: float | None = None
    line: str | None = Field(default=None, description="The comparison in words.")


class Reading(_Model):
    t_s: float = Field(description="Seconds since the benchmark began.")
    kv_cache_usage: float | None = Field(default=None, description="vLLM KV-cache usage, 0-1.")
    running: float | None = None
    waiting: float | None = None
    mem_available_gib: float | None = Field(default=None,
        description="Host MemAvailable (unified memory: the GPU's headroom too).")
    gpu_util_pct: float | None = None
    gpu_mem_used_gib: float | None = None
    gpu_power_w: float | None = None
    ollama_vram_gib: float | None = None


class ServerStats(_Model):
    """What the server and host reported during one load point (None: not available)."""

    source: str = Field(
        description="<engine>-metrics (its Prometheus /metrics, e.g. vllm-metrics), ollama (its own timings) or none."
    )
    generation_tokens: float | None = Field(default=None, description="Delta of vllm:generation_tokens_total.")
    prompt_tokens: float | None = Field(default=None, description="Delta of vllm:prompt_tokens_total.")
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    prefix_cache_hit_rate: float | None = Field(default=None, description="Delta hits / delta queries (tokens), 0-1.")
    preemptions: float | None = Field(default=None, description="Delta of vllm:num_preemptions_total.")
    kv_cache_usage_peak: float | None = None
    running_peak: float | None = None
    waiting_peak: float | None = None
    queue_time_ms_mean: float | None = Field(
        default=None, description="Server queue time (WAITING) per request, from the histogram's sum and count deltas."
    )
    queue_time_ms_p90_at_most: float | None = Field(
        default=None,
        description="Upper bound of the queue-time histogram bucket holding p90 (vLLM buckets are coarse: 300 ms "
        "first).",
    )
    ollama_eval_tps: float | None = Field(
        default=None, description="Ollama's own decode speed: sum eval_count / sum eval_duration."
    )
    ollama_prompt_eval_tps: float | None = None
    ollama_load_ms_total: float | None = Field(
        default=None, description="Model load time Ollama reported (a cold model shows here)."
    )
    mem_available_gib_min: float | None = None
    gpu_util_pct_peak: float | None = None
    gpu_mem_used_gib_peak: float | None = None
    gpu_power_w_peak: float | None = None
    readings: list[Reading] = Field(default_factory=list)


class RequestRecord(_Model):
    """One measured request. Chunk offsets let every metric be recomputed."""

    index: int
    session: int
    turn: int
    start_s: float = Field(description="Sent, seconds after the load point began.")
    queue_ms: float = Field(description="Client-side wait between release (arrival) and send.")
    ok: bool
    error_kind: str | None = None
    error: str | None = None
    http_status: int | None = None
    ttft_ms: float | None = Field(default=None, description=TTFT)
    tpot_ms: float | None = Field(default=None, description=TPOT)
    e2e_ms: float | None = Field(default=None, description=E2E)
    prompt_tokens: int | None = Field(default=None, description="The server's count.")
    prompt_tokens_sent: int | None = Field(
        default=None, description="Our tokenizer's count of the text sent (before any chat template)."
    )
    output_tokens: int | None = None
    expected_output_tokens: int | None = None
    short_output: bool = False
    finish_reason: str | None = None
    tokens_exact: bool = Field(description="chunk_tokens are the server's counts (else estimated).")
    chunk_ms: list[float] = Field(description="Arrival of each token-carrying chunk, ms after send.")
    chunk_tokens: list[int] = Field(description="Output tokens each chunk carried.")
    server_timing: dict[str, float] | None = Field(default=None, description="Ollama's own timings (ms) and counts.")


class RunResult(_Model):
    """One load point."""

    load: LoadSpec
    started_at: str = Field(description="ISO 8601, UTC.")
    stopped_reason: Literal["num_prompts", "duration", "interrupted", "server_died"]
    cancelled: int = Field(description="Requests in flight when interrupted; neither completed nor failed.")
    warmup_failed: int = 0
    summary: Summary
    plan: PlanComparison
    server: ServerStats
    requests: list[RequestRecord]


class Target(_Model):
    api: str
    url: str
    model: str
    engine: str
    service: str | None = None


class Workload(_Model):
    kind: Literal["random", "prefix", "multiturn", "file"]
    prompt_len: int
    output_len: int
    prefix_len: int | None = None
    num_prefixes: int | None = None
    turns: int | None = None
    dataset: str | None = None
    ignore_eos: bool
    temperature: float | None = None
    num_prompts: int | None = Field(description="Stop after this many measured requests per load point.")
    duration_s: float | None = Field(description="Stop issuing after this many seconds per load point.")
    warmup: int = Field(description="Requests before each load point, not measured.")
    seed: int
    tokenizer: str = Field(description="Where prompt tokens were counted: a path, an HF id, or 'approximate'.")
    tokens_exact: bool = Field(description="Prompts have exactly prompt_len tokens by the model's tokenizer.")


class Hardware(_Model):
    cpu: str | None = None
    cpu_cores: int | None = None
    mem_total_gib: float | None = None
    gpus: list[str] = Field(default_factory=list)
    profile: str | None = Field(
        default=None, description="sparkserve hardware profile of this client machine, when detected."
    )


class Environment(_Model):
    sparkserve_version: str
    python: str
    platform: str
    hostname: str
    engine: str
    engine_version: str | None = Field(default=None, description="From /version (vLLM) or /api/version (Ollama).")
    model: str
    model_root: str | None = Field(default=None, description="vLLM: where the model was loaded from.")
    max_model_len: int | None = None
    server_args: dict[str, object] = Field(
        default_factory=dict,
        description="Engine arguments, when known (stack file or the local process's command line).",
    )
    server_config: dict[str, str] = Field(
        default_factory=dict, description="vLLM cache_config_info labels (block size, cache dtype, KV blocks, ...)."
    )
    hardware: Hardware


class BenchResult(_Model):
    """Everything one `sparkserve bench` produced."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="Bumped when a field changes meaning or goes away.")
    tool: Literal["sparkserve bench"] = "sparkserve bench"
    created_at: str = Field(description="ISO 8601, UTC.")
    interrupted: bool = Field(description="Ctrl-C stopped the run: the result holds what finished.")
    target: Target
    workload: Workload
    environment: Environment
    slo: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    summary: Summary | None = Field(
        description="The last load point's summary (a sweep runs its points in the order given); see runs for each."
    )
    runs: list[RunResult]

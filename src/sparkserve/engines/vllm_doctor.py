"""vLLM's side of `doctor`: how vLLM prints its failures (log rules), and what its /metrics say about a
serving window (`doctor --live`), both in vLLM's own flags.

Readings are vLLM's Prometheus series (names from vLLM's metrics module, newest first); the
judgements compare them with the server's own settings (its command line, or the stack's args).
The rule tables build on sparkserve.logrules.matcher, a pure data model with no I/O.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sparkserve.engines.live import LiveFinding, LiveSample, Window
from sparkserve.logrules import advice
from sparkserve.logrules.matcher import Fact, Fields, LogRules, Probe, Rule, probe, rx, sig

if TYPE_CHECKING:
    import httpx

GAUGES = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # 0-1
}
COUNTERS = {
    "preemptions": ("vllm:num_preemptions_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "finished": ("vllm:request_success_total",),
    "prefix_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
}
HISTOGRAMS = {
    "queue_s": ("vllm:request_queue_time_seconds",),
    "ttft_s": ("vllm:time_to_first_token_seconds",),
    "prefill_s": ("vllm:request_prefill_time_seconds",),
    "decode_s": ("vllm:request_decode_time_seconds",),
    "e2e_s": ("vllm:e2e_request_latency_seconds",),
    "itl_s": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "prompt_len": ("vllm:request_prompt_tokens",),
}
INFO = ("vllm:cache_config_info",)

# Judgement thresholds. They decide what is named, not how fast anything is; each says why.
WAITING_SHARE = 0.5  # requests queued in at least half the reads: a standing queue, not a burst
KV_FULL = 0.9  # vLLM preempts as usage nears 1.0; above this more running requests do not fit
PREFILL_SHARE = 0.5  # prefill takes at least half of a request's time in the engine
LONG_PROMPT = 512  # tokens; below this prefill is cheap on any GPU sparkserve plans for
PREFIX_HIT_FLOOR = 0.02  # a hit rate under 2 % means the cache is not being reused
BELOW_PLAN = 0.7  # measured decode under 70 % of the plan's: more than the plan's stated error
CLIENT_SHARE = 0.25  # in flight on average under a quarter of --max-num-seqs, with nothing waiting


def _wanted() -> dict[str, str]:
    names: dict[str, str] = {}
    for key, aliases in (*GAUGES.items(), *COUNTERS.items()):
        for alias in aliases:
            names[alias] = key
    for key, aliases in HISTOGRAMS.items():
        for alias in aliases:
            names[alias + "_sum"] = key + "_sum"
            names[alias + "_count"] = key + "_count"
    for alias in INFO:
        names[alias] = "info"
    return names


WANTED = _wanted()


def _flag_value(settings: dict[str, object] | object, key: str) -> float | None:
    if not isinstance(settings, dict):
        return None
    raw = settings.get(key)
    try:
        return float(str(raw)) if raw is not None and raw is not True else None
    except ValueError:
        return None


def sample_from_metrics(text: str, at: float) -> LiveSample:
    """One LiveSample from /metrics text; data-parallel ranks and models are summed (KV usage: the fullest)."""
    from prometheus_client.parser import text_string_to_metric_families

    keep = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=len(line))
            if line[:end] in WANTED:
                keep.append(line)
    values: dict[str, float] = {}
    chosen: dict[str, str] = {}  # reading -> the alias read (the newest a server exposes wins)
    info: dict[str, str] = {}
    for family in text_string_to_metric_families("\n".join(keep) + "\n"):
        for s in family.samples:
            key = WANTED.get(s.name)
            if key is None:
                continue
            if key == "info":
                info.update({k: str(v) for k, v in s.labels.items() if k != "engine"})
                continue
            if chosen.setdefault(key, s.name) != s.name:
                continue
            if key == "kv_usage":
                values[key] = max(values.get(key, 0.0), float(s.value))
            else:
                values[key] = values.get(key, 0.0) + float(s.value)
    return LiveSample(at=at, values=values, info=info)


class VllmLiveProbe:
    """Reads a vLLM server's /metrics; judges a window against its flags."""

    def recognises(self, client: httpx.Client, base_url: str) -> bool:
        import httpx

        try:
            r = client.get(base_url + "/metrics")
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "vllm:" in r.text

    def read(self, client: httpx.Client, base_url: str, at: float) -> LiveSample:
        r = client.get(base_url + "/metrics")
        r.raise_for_status()
        return sample_from_metrics(r.text, at)

    def settings_from_argv(self, argv: list[str]) -> dict[str, object]:
        from sparkserve.engines.vllm import args_from_argv

        return args_from_argv(argv)

    def diagnose(self, window: Window) -> list[LiveFinding]:
        return [f for f in (_kv_pressure(window), _waiting(window), _prefill(window), _prefix(window),
                            _below_plan(window), _client_bound(window)) if f is not None]

    def close(self) -> None:
        pass  # reads of /metrics leave nothing running


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _common(w: Window) -> list[str]:
    lines = [f"window {w.seconds:.0f} s, {len(w.samples)} reads of /metrics"]
    finished = w.delta("finished")
    if finished is not None:
        lines.append(f"{finished:.0f} requests finished")
    return lines


def _kv_pressure(w: Window) -> LiveFinding | None:
    preempted = w.delta("preemptions") or 0.0
    kv_peak = w.peak("kv_usage")
    waiting_share = w.share("waiting", lambda v: v >= 1)
    if preempted <= 0 and not (kv_peak is not None and kv_peak >= KV_FULL and (waiting_share or 0) > 0):
        return None
    seqs = _flag_value(dict(w.settings), "max_num_seqs")
    evidence = [f"{preempted:.0f} preemptions (vllm:num_preemptions_total)" if preempted
                else "no preemption, but requests waited while the KV cache was full",
                f"KV cache usage peak {_pct(kv_peak)}, mean {_pct(w.mean('kv_usage'))}",
                f"running peak {_num(w.peak('running'), 0)}, waiting peak {_num(w.peak('waiting'), 0)}",
                *_common(w)]
    lower = f" from {seqs:.0f}" if seqs else ""
    return LiveFinding(
        "kv_cache_preemption",
        "The KV cache is too small for the requests running together: vLLM preempts (recomputes) or holds them.",
        f"Let fewer long requests share the cache or give it more room: lower --max-num-seqs{lower} so running "
        "requests fit, shorten --max-model-len, raise --gpu-memory-utilization (CPU builds: VLLM_CPU_KVCACHE_SPACE), "
        "or store the cache in FP8 (--kv-cache-dtype fp8).",
        tuple(evidence),
    )


def _waiting(w: Window) -> LiveFinding | None:
    share = w.share("waiting", lambda v: v >= 1)
    if share is None or share < WAITING_SHARE:
        return None
    seqs = _flag_value(dict(w.settings), "max_num_seqs")
    running_peak, waiting_peak = w.peak("running") or 0.0, w.peak("waiting") or 0.0
    kv_peak = w.peak("kv_usage")
    queue, e2e = w.per_event("queue_s_sum", "queue_s_count"), w.per_event("e2e_s_sum", "e2e_s_count")
    evidence = [f"requests waiting in {_pct(share)} of reads (mean {_num(w.mean('waiting'))}, peak {waiting_peak:.0f})",
                f"running peak {running_peak:.0f}" + (f" = --max-num-seqs {seqs:.0f}" if seqs and running_peak >= seqs
                                                      else ""),
                f"KV cache usage peak {_pct(kv_peak)}"]
    if queue is not None:
        evidence.append(f"queue time {queue:.2f} s per request" + (f" of {e2e:.2f} s end to end ({_pct(queue / e2e)})"
                                                                  if e2e else ""))
    evidence += _common(w)
    if kv_peak is not None and kv_peak >= KV_FULL:
        fix = ("The KV cache is full, so more running requests would not fit: shorten --max-model-len, raise "
               "--gpu-memory-utilization if memory allows, or add a replica behind a load balancer.")
    elif seqs and running_peak >= seqs:
        target = int(2 ** math.ceil(math.log2(max(2 * seqs, running_peak + waiting_peak))))
        fix = (f"Raise --max-num-seqs from {seqs:.0f} to {target}: the KV cache has room (peak {_pct(kv_peak)}). "
               "If it fills after that, shorten --max-model-len or add a replica.")
    else:
        fix = ("Raise --max-num-seqs if the KV cache has room, else shorten --max-model-len or add a replica; "
               "--max-num-batched-tokens below the prompt lengths also queues requests.")
    return LiveFinding("requests_waiting", "Requests queue in the server before they start: it runs as many "
                       "as it is allowed to.", fix, tuple(evidence))


def _prefill(w: Window) -> LiveFinding | None:
    prompt = w.per_event("prompt_len_sum", "prompt_len_count")
    prefill, e2e = w.per_event("prefill_s_sum", "prefill_s_count"), w.per_event("e2e_s_sum", "e2e_s_count")
    if prompt is None or prefill is None or not e2e or prompt < LONG_PROMPT or prefill / e2e < PREFILL_SHARE:
        return None
    mnbt = _flag_value(dict(w.settings), "max_num_batched_tokens")
    ttft = w.per_event("ttft_s_sum", "ttft_s_count")
    evidence = [f"prompts {prompt:.0f} tokens on average", f"prefill {prefill:.2f} s of {e2e:.2f} s per request "
                f"({_pct(prefill / e2e)})", f"time to first token {_num(ttft, 2)} s", *_common(w)]
    if mnbt and mnbt < prompt:
        target = int(2 ** math.ceil(math.log2(max(prompt, 2 * mnbt))))
        fix = (f"Raise --max-num-batched-tokens from {mnbt:.0f} to {target} so a prompt is prefilled in fewer "
               "steps; with many users keep chunked prefill on so decodes are not starved.")
        evidence.append(f"--max-num-batched-tokens {mnbt:.0f} < mean prompt")
    else:
        fix = ("Prefill dominates: raise --max-num-batched-tokens, enable prefix caching if prompts share a prefix "
               "(--enable-prefix-caching), or shorten the prompts.")
    return LiveFinding("prefill_bound", "Long prompts make prefill the bulk of each request's time.", fix,
                       tuple(evidence))


def _prefix(w: Window) -> LiveFinding | None:
    prompt = w.per_event("prompt_len_sum", "prompt_len_count")
    if prompt is None or prompt < LONG_PROMPT:
        return None
    enabled = (w.info("enable_prefix_caching") or "").lower()
    settings = dict(w.settings)
    off = enabled == "false" or settings.get("no_enable_prefix_caching") is True
    queries, hits = w.delta("prefix_queries"), w.delta("prefix_hits")
    if off:
        evidence = ["prefix caching is off (--no-enable-prefix-caching / cache_config_info)",
                    f"prompts {prompt:.0f} tokens on average", *_common(w)]
        return LiveFinding("prefix_cache_unused", "Prefix caching is off while requests carry long prompts.",
                           "Turn it on (--enable-prefix-caching; on by default since vLLM 0.8): requests that share "
                           "a system prompt or document then skip its prefill.", tuple(evidence))
    if queries and hits is not None and hits / queries < PREFIX_HIT_FLOOR:
        evidence = [f"prefix cache hit rate {_pct(hits / queries)} ({hits:.0f} of {queries:.0f} tokens)",
                    f"prompts {prompt:.0f} tokens on average", *_common(w)]
        return LiveFinding("prefix_cache_unused", "The prefix cache is on but almost nothing is reused.",
                           "Put the shared part (system prompt, tools, document) first and keep it byte-identical "
                           "across requests; a timestamp or user id early in the prompt defeats the cache.",
                           tuple(evidence))
    return None


def _below_plan(w: Window) -> LiveFinding | None:
    planned, batch = w.plan.get("decode_tps"), w.plan.get("batch", 1.0)
    itl = w.per_event("itl_s_sum", "itl_s_count")
    running = w.mean("running")
    if not planned or not itl or running is None or running > max(1.5, batch):  # a bigger batch is slower per request
        return None
    measured = 1 / itl
    if measured >= BELOW_PLAN * planned:
        return None
    return LiveFinding(
        "below_plan",
        f"Decode runs at {measured:.1f} tokens/s per request, well under the plan's {planned:.1f} "
        f"at batch {batch:.0f}.",
        "Something else takes the GPU or memory bandwidth: another tenant or service (`nvidia-smi`, `sparkserve "
        "status`), power or thermal limits (`nvidia-smi -q -d PERFORMANCE`), or on unified memory page cache and "
        "swapping (flush caches, keep MemAvailable free).",
        (f"inter-token latency {itl * 1000:.1f} ms -> {measured:.1f} tokens/s", f"plan: {planned:.1f} tokens/s",
         f"running mean {running:.1f}", *_common(w)),
    )


def _client_bound(w: Window) -> LiveFinding | None:
    waiting_peak, running = w.peak("waiting"), w.mean("running")
    if waiting_peak is None or running is None or waiting_peak > 0:
        return None
    seqs = _flag_value(dict(w.settings), "max_num_seqs")
    if running > max(1.5, CLIENT_SHARE * seqs if seqs else 1.5):
        return None
    idle = w.share("running", lambda v: v < 1)
    room = f"; --max-num-seqs {seqs:.0f} allows {seqs - (w.peak('running') or 0):.0f} more" if seqs else ""
    evidence = [f"{running:.1f} requests in flight on average (peak {w.peak('running') or 0:.0f}), none waiting{room}",
                f"idle in {_pct(idle)} of reads", f"KV cache usage peak {_pct(w.peak('kv_usage'))}", *_common(w)]
    return LiveFinding(
        "client_bound",
        "The load, not the server, is the limit: few requests are in flight and none wait.",
        "Send more requests in parallel (raise the client's concurrency or users); the server's throughput grows with "
        "batch size until requests start to wait. Server flags will not help at this load.",
        tuple(evidence),
    )


# --- log rules: how vLLM prints its failures -----------------------------------------------------------

# Flags vLLM removed, with the release and the pull request that removed them.
REMOVED_FLAGS: dict[str, str] = {
    "--swap-space": "was removed in vLLM 0.18 (vllm#36216; it did nothing on the V1 engine): delete it",
    "--disable-log-requests": (
        "was removed in vLLM 0.12 (vllm#29402); request logging is off by default: delete it "
        "(or say --no-enable-log-requests)"
    ),
}


def _flag(f: Fields) -> dict[str, str]:
    return advice.flag_verdict(f, REMOVED_FLAGS, "`vllm serve --help=all`")


_FREE_MEMORY_NUMBERS = (
    rx(
        r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup is\s*"
        r"less\s*than\s*desired\s*GPU\s*memory\s*utilization\s*"
        r"\((?P<util>[\d.]+),\s*(?P<requested>[\d.]+)\s*GiB\)"
    ),
    rx(r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\)"),
)
_WEIGHTS_LOADED = probe(r"Model loading took|Loading model weights took|Loading weights took")
_LAUNCHED = r"(?:\S+\.(?:py|sh)|python[\d.]*|bash|sh|/(?:usr/)?bin/\S+|vllm(?:\.entrypoints\S*)?|serve)(?=\s|$)"
"""A program, script or engine CLI word: what a shell or Dockerfile CMD runs, never a value vLLM's parser wants."""
_CUDA_OOM = r"CUDA out of memory|OutOfMemoryError: CUDA|CUDA error: out of memory"
_OOM_NUMBERS = (
    rx(r"Tried to allocate (?P<tried>[\d.]+ [KMG]iB)"),
    rx(r"total capa(?:ci)?ty of (?P<total>[\d.]+ GiB) of which (?P<free>[\d.]+ [KMG]iB) is free"),
    rx(r"\(GPU \d+; (?P<total>[\d.]+ GiB) total capacity"),
)

NOISE: tuple[Probe, ...] = (
    probe(r"If out-of-memory error occurs during cudagraph capture"),
    probe(r"No available shared memory broadcast block found"),
    probe(r"Default sampling parameters have been overridden"),
    probe(r"Found ulimit of \d+ and failed to automatically increase"),
    probe(r"Possibly too large swap space"),
    probe(r"We must use the `spawn` multiprocessing start method"),
    probe(r"To see benefits of async output processing"),
    probe(r"does not have native support for FP8 computation"),
    probe(r"Casting torch\.\w+ to torch\.\w+"),
    probe(r"Not enough SMs to use max_autotune_gemm"),
    probe(r"destroy_process_group\(\) was not called"),
    probe(r"SyntaxWarning: invalid escape sequence"),
    probe(r"Cudagraph is disabled under eager mode"),
    probe(r"not control-type; this is probably a bug in the model"),
    probe(r"Failed to import from vllm\._C with ModuleNotFoundError"),
)

FACTS: tuple[Fact, ...] = (
    Fact(
        "util",
        probe(r"gpu[-_]memory[-_]utilization['\"]?\s*(?:=|:|\s)\s*\(?(?P<v>0?\.\d+|1\.0)\b", needle="utilization"),
    ),
    Fact("util", probe(r"desired GPU memory utilization (?:is )?\((?P<v>[\d.]+),")),
    Fact("total_gib", probe(r"total_gpu_memory\s*[=(]\s*(?P<v>[\d.]+)\s*GiB")),
    Fact("total_gib", probe(r"total capacity of (?P<v>[\d.]+) GiB")),
    Fact("total_gib", probe(r"Free memory on device(?: \S+)? \([\d.]+/(?P<v>[\d.]+) GiB\)")),
    Fact("kv_size", probe(r"kv_cache_size=(?P<v>[\d.]+)GiB")),
    Fact("mem_get_info", probe(r"mem_get_info|cudaMemGetInfo")),
    Fact("ready", probe(r"Application startup complete|Starting vLLM API server")),
    Fact("valid_flags", probe(r"\[(?P<v>--[a-z0-9][\w-]*)", needle="[--"), accumulate=True),
)

RULES: tuple[Rule, ...] = (
    Rule(
        "no_kv_cache_memory",
        priority=95,
        signatures=(
            sig(r"No available memory for the cache blocks"),
            sig(r"# GPU blocks: 0\b", needle="# gpu blocks: 0"),
            sig(r"Available KV cache memory: (?P<kv>-[\d.]+) ?GiB", needle="available kv cache memory: -"),
        ),
        summary=(
            "After the weights and the activation peak nothing was left for the KV cache[ at "
            "--gpu-memory-utilization {util}][ ({kv} GiB)]."
        ),
        fix=(
            "Give vLLM a larger share: raise --gpu-memory-utilization[ above {util}] if no other process uses the GPU "
            "(`nvidia-smi`), lower the activation peak (--max-num-batched-tokens, --max-num-seqs, --enforce-eager), "
            "or serve a quantized/smaller model or more GPUs (--tensor-parallel-size)."
        ),
        supersedes=("cuda_oom_runtime",),
        uma_note=advice.SPARK_MEMORY,
    ),
    Rule(
        "kv_cache_too_small_for_max_model_len",
        priority=95,
        signatures=(sig(r"max seq len \(\d+\)"),),
        summary="The KV cache cannot hold one request of max-model-len[ ({needed} GiB needed, {avail} GiB available)].",
        fix=(
            "KV cache holds {est_approx}{est_fmt} tokens, max-model-len is {max_len_fmt}: lower --max-model-len to "
            "{suggested} (or ≤ {est}){util_advice}."
        ),
        extract=(
            rx(
                r"max seq len \((?P<max_len>\d+)\),\s*\(?(?P<needed>[\d.]+)\s*GiB\s*KV\s*cache\s*is\s*needed,"
                r"\s*which\s*is\s*larger\s*than\s*the\s*available\s*KV\s*cache\s*memory\s*\((?P<avail>[\d.]+)\s*GiB\)"
            ),
            rx(r"estimated\s*maximum\s*model\s*length\s*is\s*(?P<est>\d+)"),
            rx(
                r"max seq len \((?P<max_len>\d+)\) is larger than the maximum number of tokens that can be stored in "
                r"KV cache \((?P<est>\d+)\)"
            ),
        ),
        derive=advice.kv_cache,
        supersedes=("cuda_oom_runtime",),
        uma_note=(
            "On DGX Spark prefer a shorter --max-model-len over a higher utilisation: the pool is shared with the OS."
        ),
    ),
    Rule(
        "page_cache_pressure",
        priority=96,
        signatures=(
            sig(r"Free memory on device .*on startup is\b", needle="free memory on device"),
            sig(_CUDA_OOM),
        ),
        summary=(
            "On unified memory (DGX Spark) too little memory was free at start-up[: {free} of {total} GiB free, "
            "{requested} GiB requested at utilisation {util}]; page cache and other processes count as used."
        ),
        fix=(
            "Flush clean caches and retry: `sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`; compare MemAvailable "
            "with MemFree in /proc/meminfo and stop other memory users (other containers, leftover vLLM processes; "
            "reboot if memory stays trapped). Only then lower --gpu-memory-utilization"
            "[ (≤ {max_util} fits right now)]; Spark recipes use 0.85."
        ),
        extract=_FREE_MEMORY_NUMBERS,
        when=lambda f: advice.on_unified_memory(f) and ("free" in f or "mem_get_info" in f),
        derive=advice.free_memory,
        supersedes=("free_memory_below_utilization", "cuda_oom_runtime"),
    ),
    Rule(
        "free_memory_below_utilization",
        priority=90,
        signatures=(sig(r"Free memory on device .*on startup is\b", needle="free memory on device"),),
        summary=(
            "Less GPU memory was free at start-up than --gpu-memory-utilization asks for[: {free} of {total} GiB "
            "free, {requested} GiB requested]."
        ),
        fix=(
            "[Something else holds {held} GiB: ]stop the other GPU processes (`nvidia-smi`; leftover vLLM workers, "
            "a second container) or lower --gpu-memory-utilization[ from {util} to ≤ {max_util}]."
        ),
        extract=_FREE_MEMORY_NUMBERS,
        derive=advice.free_memory,
    ),
    Rule(
        "weights_oom",
        priority=88,
        signatures=(
            sig(r"Failed to create \w+ (?:\w+ )?weights: CUDA out of memory"),
            sig(_CUDA_OOM),
        ),
        summary="The GPU ran out of memory while loading the model weights[ (tried {tried}, {free} free of {total})].",
        fix=(
            "The weights do not fit[ in {total}]: use a quantized checkpoint (FP8, AWQ/GPTQ, NVFP4), spread it over "
            "more GPUs with --tensor-parallel-size, or free the GPU (another process may hold memory: `nvidia-smi`). "
            "Lowering --max-model-len does not help at this stage."
        ),
        extract=_OOM_NUMBERS,
        requires=(
            probe(
                r"load_model|load_weights|create_weights|weight_loader|model_loader|load_single_module"
                r"|Loading (?:safetensors|pt) checkpoint shards|Loading (?:safetensors )?weights"
            ),
        ),
        excludes=(_WEIGHTS_LOADED,),
        supersedes=("cuda_oom_runtime",),
        uma_note=advice.SPARK_MEMORY,
    ),
    Rule(
        "entrypoint_args_mismatch",
        priority=92,
        signatures=(
            sig(r"unrecognized arguments: (?P<arg>[^-\s]\S*)"),
            # a launcher's command line after the interpreter was eaten as the positional model: `-u main.py`
            sig(
                rf"unrecognized arguments: (?P<arg>(?:-[A-Za-z]\s+)+{_LAUNCHED})",
                needle="unrecognized arguments: -",
                fix=(
                    "The vLLM server is the image's entrypoint and received a program's command line ('{arg}') as "
                    "its arguments. An image built FROM a vLLM image inherits its ENTRYPOINT: to run your own "
                    "program set ENTRYPOINT (not CMD) in that Dockerfile, or start it with `--entrypoint`; to run "
                    "vLLM itself pass only the model and flags as the command."
                ),
            ),
            sig(r"""exec: "?(?P<arg>--[\w-]+)"?: (?:executable file )?not found""", needle="exec: "),
        ),
        summary="The container command does not fit the image's entrypoint (the engine got '{arg}' as an argument).",
        fix=(
            "The vllm/vllm-openai entrypoint already runs the server: pass only the model and flags as the command "
            '(`command: ["<model>", "--max-model-len", "8192"]`), not `vllm serve …` or a shell; images without '
            "an entrypoint (nvcr.io/nvidia/vllm) need the full `vllm serve <model> …`. To run a shell, override "
            "`--entrypoint`."
        ),
    ),
    Rule(
        "unknown_cli_flag",
        priority=90,
        signatures=(
            sig(r"unrecognized arguments: (?P<flag>--?[\w-]+(?:=\S*)?)"),
            sig(r"ambiguous option: (?P<flag>--?[\w-]+)(?:=\S*)? could match (?P<candidates>.+)$"),
        ),
        summary="The engine rejected the command-line flag {flag}.",
        fix="{flag} {verdict}.",
        derive=_flag,
    ),
    Rule(
        "invalid_engine_argument",
        priority=85,
        signatures=(
            sig(r"Unknown quantization method: (?P<value>[\w-]+)\. Must be one of \[(?P<choices>[^\]]*)\]"),
            sig(
                r"argument (?P<arg>--[\w-]+)(?:/-\w+)?: invalid choice: '(?P<value>[^']*)' \(choose from "
                r"(?P<choices>[^)]*)\)"
            ),
            sig(r"type=literal_error, input_value='(?P<value>[^']*)'", needle="literal_error"),
            sig(
                r"Quantization method specified in the model config \((?P<cfg>[\w-]+)\) does not match the "
                r"quantization method specified in the `?quantization`? argument \((?P<value>[\w-]+)\)",
                summary="--quantization {value} contradicts the checkpoint, which is quantized as {cfg}.",
                fix="Drop --quantization (vLLM reads it from the checkpoint) or set --quantization {cfg}.",
            ),
            sig(
                r"User-specified max_model_len \((?P<user>\d+)\) is greater than the derived max_model_len "
                r"\((?:\w+=)?(?P<derived>\d+)(?: in (?P<where>[^)]*))?",
                summary="--max-model-len {user} is longer than the model supports ({derived}[, from {where}]).",
                fix=(
                    "Set --max-model-len ≤ {derived}; go beyond it only with a model-supported RoPE scaling "
                    "(--hf-overrides), not with VLLM_ALLOW_LONG_MAX_MODEL_LEN."
                ),
            ),
            # Last: any other check of vLLM's config classes (pydantic), e.g. SchedulerConfig's
            # "long_prefill_token_threshold (3000) cannot be greater than the max_model_len (2048)".
            sig(
                r"Value error, (?P<detail>.+?)\.? \[type=value_error",
                summary="vLLM refused the combination of its arguments: {detail}.",
                fix="Change the arguments the message names so they agree (`vllm serve --help=all` explains each).",
            ),
        ),
        summary="An engine argument has an invalid value[: '{value}'][ for {arg}].",
        fix=(
            "Use one of the accepted values[: {choices_short}][ — closest: {closest}]; "
            "`vllm serve --help=all` lists them."
        ),
        extract=(rx(r"Input should be (?P<choices>.+?) \[type=literal_error"),),
        derive=advice.choices,
    ),
    Rule(
        "broken_engine_install",
        priority=93,
        signatures=(
            sig(r"_C\S*\.so: undefined symbol"),
            sig(
                r"Error in inspecting model architecture '(?P<arch>[^']+)'",
                summary=(
                    "vLLM could not import its own model code while inspecting '{arch}': "
                    "the install or platform is broken."
                ),
                fix=(
                    "Run vLLM where it is supported (Linux or WSL2, or the official container), in a clean venv "
                    "with the torch its wheel pins; the 'architecture not supported' error that follows is a "
                    "consequence."
                ),
            ),
            sig(r"No module named '(?P<module>vllm\._C|vllm|torch)'"),
            sig(r"operator torchvision::nms does not exist"),
            sig(r"(?P<module>lib\w+\.so[.\d]*): cannot open shared object file"),
        ),
        summary=(
            "The engine installation is broken: its compiled extension does not match the installed "
            "PyTorch/CUDA libraries."
        ),
        fix=(
            "Reinstall in a clean venv so pip picks the torch the vLLM wheel was built against (`pip install "
            "vllm==<version>`), never upgrade torch separately; on CPU builds remove CUDA torchvision/torchaudio "
            "(`pip uninstall -y torchvision torchaudio`). The official container image avoids this."
        ),
        supersedes=("model_format_unsupported_by_engine",),
    ),
    Rule(
        "model_format_unsupported_by_engine",
        priority=92,
        signatures=(
            sig(
                r"GGUF model with architecture (?P<arch>[\w.-]+) is not supported",
                fix=(
                    "vLLM's GGUF loader does not know '{arch}': serve the original safetensors checkpoint with "
                    "vLLM, or serve this GGUF with Ollama or llama.cpp."
                ),
            ),
            sig(
                r"Architecture (?P<arch>[\w.-]+) not supported",
                needle="architecture ",
                fix=(
                    "The GGUF reader does not know '{arch}': serve the original safetensors checkpoint with vLLM, or "
                    "serve this GGUF with Ollama or llama.cpp."
                ),
            ),
            sig(r"Model architectures \[(?P<arch>[^\]]+)\] are not supported for now"),
        ),
        summary="The engine cannot load this model format/architecture[ ('{arch}')].",
        fix=(
            "Use a checkpoint format this engine supports for '{arch}' (safetensors for vLLM, GGUF for Ollama), "
            "or upgrade the engine."
        ),
    ),
    Rule(
        "cuda_oom_runtime",
        priority=60,
        signatures=(sig(_CUDA_OOM),),
        summary=(
            "The GPU ran out of memory after the weights loaded (profiling, CUDA-graph capture or a large batch)[: "
            "tried {tried}, {free} free of {total}]."
        ),
        fix=(
            "Leave more headroom: lower --gpu-memory-utilization[ from {util}], reduce --max-num-seqs and "
            "--max-num-batched-tokens, or add --enforce-eager to skip CUDA graphs; "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True helps when memory is fragmented."
        ),
        extract=_OOM_NUMBERS,
        uma_note=advice.SPARK_MEMORY,
    ),
)

LOG_RULES = LogRules(RULES, FACTS, NOISE)

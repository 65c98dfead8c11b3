"""How fast a deployment decodes and prefills, alone and under load, and the ceiling it cannot pass.

One engine step runs a batch of rows: one per decoding sequence plus a chunk of prompt tokens.
It streams the weights the rows touch once for the whole batch (for MoE, the experts that
B tokens x top-k route to), every decoding sequence's KV cache (growing with its context),
and takes the longer of that traffic over the achieved bandwidth and its FLOPs over the
achieved compute (matmuls of few rows, or few rows per expert, run below peak; attention in BF16
at the share attention kernels reach), plus the
engine's fixed cost per step, a cost per sequence (sampling, scheduling) and the all-reduces
of tensor parallelism. Under load, new prompts are prefilled in the same steps (vLLM's
chunked prefill, at most max-num-batched-tokens rows), so the decoding requests pay for
them; a new request waits for the running step and for the prompts of the other clients that came
before it (a queue: its wait grows as long prompts keep the prefill busy), then for its own
prompt's chunks (less those in the prefix cache, which it attends to but does not compute). Prompts sent all
at once to a KV cache that holds fewer of them are replayed through the engine's admission (plan/paged_queue.py)
and every step of that run priced. The ceiling is the same pure-decode traffic at 100 % of spec bandwidth and
compute with no overhead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparkserve.models.spec import ModelSpec
from sparkserve.plan import kv_kinds
from sparkserve.plan.calibration import Efficiency, efficiency_for
from sparkserve.plan.memory import Deployment, group_weight_bytes, kv_bytes_per_layer_token
from sparkserve.plan.paged_queue import run_queue
from sparkserve.plan.quant import GGUF_ENGINES, compute_dtype

# Block the queue replay counts in: vLLM's on CUDA (CacheConfig.block_size 16); SGLang's pages are 1 token and
# TensorRT-LLM's 32, which changes nothing when prompts are thousands of tokens long.
QUEUE_BLOCK_TOKENS = 16


@dataclass(frozen=True)
class Workload:
    batch: int = 1  # concurrent requests (sequences decoding together while none queue)
    prompt_len: int = 512
    output_len: int = 256
    context: int | None = None  # tokens already in each sequence's KV cache while decoding
    # True: new prompts arrive while the batch decodes (a server held at `batch` requests);
    # False: the batch decodes alone, as llama-batched-bench measures it.
    mixed_prefill: bool = True
    prefix_hit: float = 0.0  # share of each prompt already in the prefix cache (not prefilled again)
    # The engine's KV cache in tokens, given when the batch's prompts are all sent at once and may not all fit
    # in it (a benchmark's burst): then prefill_tps follows the engine's admission (plan/paged_queue.py).
    kv_tokens: int | None = None


@dataclass(frozen=True)
class SpeedPlan:
    decode_tps: float  # tokens/s of one request at the batch (1 / ITL)
    aggregate_tps: float  # output tokens/s of the whole batch while it decodes (batch x decode_tps)
    output_tps: float  # output tokens/s of a server held at `batch` requests, prefills and waits included
    # prompt tokens/s while the batch's prompts are prefilled together; for a burst the cache cannot hold
    # (Workload.kv_tokens), input tokens over the whole run, as a benchmark sending them at once measures it
    prefill_tps: float
    ttft_ms: float  # first token of a request arriving while `batch - 1` others decode and send prompts (idle at 1)
    itl_ms: float  # time between two tokens of one request
    # output tokens/s of `batch` requests sent together, from the first one's first token to the last one's last
    # token: the later prompts are prefilled inside that span (how llama-benchy's t/s (total) times a burst)
    burst_decode_tps: float
    roofline_decode_tps: float  # one request at the batch, 100 % spec bandwidth and compute, no overhead
    decode_step_ms: float
    bytes_per_step_gb: float  # memory traffic of one decode step, all devices
    bound: str  # "memory" or "compute"
    efficiency: Efficiency

    @property
    def roofline_aggregate_tps(self) -> float:
        return self.roofline_decode_tps * (self.aggregate_tps / self.decode_tps if self.decode_tps else 0.0)


def experts_touched_fraction(model: ModelSpec, batch: float, spread: float = 1.0) -> float:
    """Expected share of each MoE layer's experts that `batch` tokens route to: uniform routing of
    batch^spread independent tokens (spread 1: every token routes independently). A power, not a
    line: the distinct experts a stream of tokens touches grows ever more slowly with its length, as
    popular experts take a larger share (llama-batched-bench on gpt-oss-120b and Qwen3-30B-A3B reads
    as ~3.5, ~5, ~7.5 and ~12 independent tokens at 4, 8, 16 and 32 sequences)."""
    if not model.is_moe:
        return 1.0
    tokens = batch**spread if batch >= 1 else batch
    return float(1.0 - (1.0 - model.experts_per_token / model.num_experts) ** tokens)


def _weight_bytes_split(dep: Deployment) -> tuple[float, float]:
    """(bytes every step reads whatever the batch, bytes of all routed experts), over all devices."""
    model = dep.model
    groups = group_weight_bytes(model, dep.quant, dep.engine, dep.extra_quantized)
    head = groups["lm_head"] or groups["embedding"]  # tied embeddings are read once, as the output projection
    dense = sum(groups[g] for g in ("attention", "dense_mlp", "moe_shared", "other"))
    return dense + head, groups["experts"]


def decode_bytes(dep: Deployment, batch: float, context: int, spread: float = 1.0) -> float:
    """Bytes one decode step of `batch` sequences reads, over all devices (`spread`: experts_touched_fraction)."""
    shared, experts = _weight_bytes_split(dep)
    touched = experts_touched_fraction(dep.model, batch, spread)
    return shared + experts * touched + batch * kv_bytes_per_context(dep, context)


def kv_bytes_per_context(dep: Deployment, context: float) -> float:
    return _kv_bytes(dep.model, _kv_layout(dep, dep.engine in GGUF_ENGINES), context)


def _kv_layout(dep: Deployment, gguf: bool) -> tuple[str, int]:
    """(KV dtype, ranks): each tensor-parallel rank reads its own KV heads (replicated when ranks
    outnumber them); llama.cpp splits layers, so one device reads each layer's cache."""
    kv_dtype = dep.kv_cache_dtype if dep.kv_cache_dtype != "auto" else ("f16" if gguf else "auto")
    return kv_dtype, 1 if gguf else dep.devices


def _kv_bytes(model: ModelSpec, layout: tuple[str, int], context: float) -> float:
    """Cache bytes one sequence at `context` tokens reads in a step, all ranks."""
    kv_dtype, ranks = layout
    if model.cache_kinds:
        return kv_kinds.context_bytes(model, kv_dtype, ranks, context) * ranks
    per_layer_token = kv_bytes_per_layer_token(model, kv_dtype, ranks) * ranks
    window = model.sliding_window or context
    # DeepSeek sparse attention reads the latents of its index_topk tokens (the indexer keys are a small share)
    attended = min(context, model.index_topk) if model.index_topk else context
    layer_tokens = model.full_attention_layers * attended + model.sliding_window_layers * min(context, window)
    # linear-attention / Mamba layers read and write their fixed state once per step instead
    return layer_tokens * per_layer_token + 2 * model.recurrent_state_bytes()


def flop_params(model: ModelSpec) -> float:
    """Parameters a token multiplies through (input embeddings are a lookup, not a matmul)."""
    p = model.params
    head = p.lm_head or p.embedding
    return p.attention + p.dense_mlp + p.moe_shared + p.other + head + p.experts_active


def peak_matmul_seconds(model: ModelSpec, tokens: float, dense_peak: float, experts_peak: float) -> float:
    """Seconds of `tokens` tokens' weight matmuls at spec peaks (no tile fill, no overhead): the ceilings'."""
    experts = model.params.experts_active
    return 2 * tokens * ((flop_params(model) - experts) / dense_peak + experts / experts_peak)


def attention_flops(model: ModelSpec, queries: float, context: float, causal: bool, register_head: int = 0) -> float:
    """QK^T and AV for `queries` tokens against `context` keys (halved when causal over itself); with
    `register_head`, heads wider than it count head_dim / register_head times (the time they take, in FLOPs)."""
    if model.cache_kinds:
        return 4 * queries * kv_kinds.attended_keys(model, context, causal, register_head)
    q_dim = model.num_attention_heads * model.head_dim
    window = model.sliding_window or context
    keys_full = context / 2 if causal else context
    keys_local = min(keys_full, window)
    per_query = model.full_attention_layers * keys_full + model.sliding_window_layers * keys_local
    return 4 * queries * q_dim * per_query * kv_kinds.wide_head_cost(model.head_dim, register_head)


def gemm_efficiency(rows: float, half_rows: float) -> float:
    """Tensor cores fill up with rows: a matmul of few tokens (or few tokens per expert) runs below peak."""
    return rows / (rows + half_rows)


def _matmul_seconds(flops: float, weight_bytes: float, rows: float, half_rows: float, achieved: float,
                    m: _Machine) -> tuple[float, float]:
    """(seconds, of which streaming the weights) of matmuls of `rows` rows: the faster of a tensor-core
    GEMM, whose tiles fill with rows, and a streaming kernel (GEMV, llama.cpp's MMVQ) that does each
    row's dot products at the full rate while the weights stream past, but does not hide either under
    the other. An engine picks the second for a row or a few, so one token never waits for empty tiles."""
    tiled = flops / (achieved * gemm_efficiency(rows, half_rows))
    stream = weight_bytes / m.bw
    streamed = stream + flops / achieved
    return (tiled, 0.0) if tiled <= streamed else (streamed, stream)


def _tp_comm_seconds(dep: Deployment, tokens: float, gguf: bool) -> float:
    """Two all-reduces of the hidden state per layer across tensor-parallel ranks."""
    if dep.devices == 1 or gguf:
        return 0.0
    hw = dep.hardware
    link = hw.inter_link if dep.nodes > 1 else hw.intra_link
    if link is None:
        return 0.0
    n = dep.devices
    payload = tokens * dep.model.hidden_size * 2 * 2 * (n - 1) / n
    per_allreduce = link.latency_us * 1e-6 * math.log2(n) * 2 + payload / (link.bandwidth_gbs * 1e9)
    return 2 * dep.model.num_layers * per_allreduce


@dataclass(frozen=True)
class _Machine:
    """What one step can use (bandwidth and compute, achieved and spec, over the devices whose
    bandwidth adds up: tensor parallel yes, llama.cpp's layer split no) and what it always reads."""

    bw: float
    bw_spec: float
    achieved: float  # the dense matmuls (attention projections, MLPs, shared experts, lm_head)
    peak: float
    experts_achieved: float  # the routed experts' matmuls
    experts_peak: float
    # attention's QK^T and AV multiply activations by the cached keys and values, in BF16 whatever format
    # the weights are in (FlashAttention's kernels): at long prompts FP8 weights speed up only the rest
    attention: float
    attention_peak: float
    register_head: int  # heads wider than this run attention below its rate (0: none; Engine.portable_register_head)
    gguf: bool
    shared: float  # bytes every step reads whatever the batch
    experts: float  # bytes of all routed experts
    kv_layout: tuple[str, int]  # KV dtype and the ranks that each read their own heads


def _machine(dep: Deployment, eff: Efficiency) -> _Machine:
    hw = dep.hardware
    gguf = dep.engine in GGUF_ENGINES
    par = 1 if gguf else dep.devices
    bw_spec = hw.bandwidth_gbs * 1e9 * par
    (peak, experts_peak, attention_peak), (reached, experts_reached, _) = _matmul_rates(
        dep, eff.weight_only_gemm or WEIGHT_ONLY_GEMM)
    bw = min(bw_spec, hw.effective_bandwidth_gbs * 1e9 * eff.bandwidth * par)
    shared, experts = _weight_bytes_split(dep)
    attention_share = eff.attention_compute or eff.compute
    fallback, register_head = _portable_attention(dep)
    if eff.fallback_attention_compute and fallback:
        attention_share = eff.fallback_attention_compute
    attention = attention_peak * min(1.0, attention_share)
    share = min(1.0, eff.compute)
    expert_share = min(1.0, eff.expert_compute or eff.compute)
    return _Machine(bw=bw, bw_spec=bw_spec, achieved=reached * share, peak=peak,
                    experts_achieved=experts_reached * expert_share,
                    experts_peak=experts_peak, attention=attention, attention_peak=attention_peak,
                    register_head=register_head, gguf=gguf,
                    shared=shared, experts=experts, kv_layout=_kv_layout(dep, gguf))


def _portable_attention(dep: Deployment) -> tuple[bool, int]:
    """Whether the engine runs this model's attention on its portable kernel on this hardware, and the widest
    head that kernel keeps in registers (0: no limit); the engine's module says both."""
    from sparkserve.engines import find_engine

    engine = find_engine(dep.engine)
    if engine is None or not engine.fallback_attention(dep.model, dep.hardware, dep.attention_backend):
        return False, 0
    return True, engine.portable_register_head


# A weight-only kernel (Marlin's W4A16 / W8A16: 4- or 8-bit weights dequantised in registers, multiplied in
# BF16) tops out below a BF16 GEMM once a matmul has enough rows to be compute bound: 141 TFLOPS at 256 to 4000
# rows against torch's BF16 GEMM at 231-235 for 2048-4000 rows, speedup 0.60-0.61 (vllm#2497, Marlin's bench.py).
# The share the engines reach is fitted (Efficiency.weight_only_gemm, one value for every engine); this benchmark
# is the fit's starting point and the value of an engine that declares none.
WEIGHT_ONLY_GEMM = 0.61


Rates = tuple[float, float, float]


def matmul_peaks(dep: Deployment, kernels: bool = False) -> Rates:
    """Spec FLOP/s of (the dense matmuls, the routed experts' matmuls, attention) over the devices; with
    `kernels`, the rates the engine's kernels reach with weight-only kernels at WEIGHT_ONLY_GEMM (see
    `_matmul_rates`; a plan takes the fitted share, Efficiency.weight_only_gemm)."""
    spec, reached = _matmul_rates(dep)
    return reached if kernels else spec


def _matmul_rates(dep: Deployment, weight_only_gemm: float = WEIGHT_ONLY_GEMM) -> tuple[Rates, Rates]:
    """(spec, kernel) FLOP/s of (the dense matmuls, the routed experts' matmuls, attention) over the devices.

    A weight group the checkpoint keeps in 16 bit (embeddings and lm_head always; NVIDIA's Gemma 4 NVFP4
    checkpoints their attention too) multiplies at the BF16 rate while the quantised groups run at their
    format's, so the dense matmuls' peak is the rate that takes their FLOPs in the same time as the two
    parts would. Attention's QK^T and AV run in BF16 (FlashAttention) whatever the weights are. The kernel
    rates put quantised groups that a weight-only kernel multiplies in BF16 at WEIGHT_ONLY_GEMM of the BF16
    rate (the ceilings take the spec rates; llama.cpp's shares are fitted on its dequantising kernels)."""
    hw = dep.hardware
    par = 1 if dep.engine in GGUF_ENGINES else dep.devices
    bf16 = hw.dense_tflops("bf16") * 1e12 * par
    dtype = compute_dtype(dep.quant, hw, dep.engine, dep.marlin)
    low = hw.dense_tflops(dtype) * 1e12 * par
    weight_only = dtype == "bf16" and dep.quant.bits < _SIXTEEN_BIT and dep.engine not in GGUF_ENGINES
    spec = _mixed_rates(dep, bf16, low)
    return spec, (_mixed_rates(dep, bf16, bf16 * weight_only_gemm) if weight_only else spec)


def _mixed_rates(dep: Deployment, bf16: float, low: float) -> Rates:
    """The three rates when the quantised groups multiply at `low` and the 16-bit ones at `bf16`."""
    if low == bf16:
        return bf16, bf16, bf16
    model = dep.model
    groups = group_weight_bytes(model, dep.quant, dep.engine, dep.extra_quantized)
    p = model.params

    def sixteen_bit(group: str, params: float) -> bool:
        return params > 0 and groups[group] * 8 / params >= _SIXTEEN_BIT

    head = "lm_head" if p.lm_head else "embedding"
    dense = {g: getattr(p, g) for g in ("attention", "dense_mlp", "moe_shared", "other", head)}
    total = sum(dense.values())
    held = sum(n for g, n in dense.items() if sixteen_bit(g, n))
    dense_peak = total / (held / bf16 + (total - held) / low) if total else low
    return dense_peak, bf16 if sixteen_bit("experts", p.experts) else low, bf16


_SIXTEEN_BIT = 12  # bits per parameter above which a group is held in 16 bit (quantised groups: <= 8.5)


@dataclass(frozen=True)
class _Step:
    seconds: float
    t_mem: float
    t_flop: float
    t_stream: float  # the part of t_flop that streams weights (GEMV kernels): memory time, not arithmetic
    moved: float

    @property
    def bound(self) -> str:
        return "memory" if self.t_mem >= self.t_flop - self.t_stream else "compute"


def _step(dep: Deployment, eff: Efficiency, m: _Machine, decode_rows: float, context: float,
          pieces: tuple[tuple[float, float], ...] = ()) -> _Step:
    """One engine step: `decode_rows` sequences at `context` tokens, plus prompt `pieces`, each (tokens of its
    own prompt already in the cache, tokens computed now): a piece reads its own prompt's cache and attends to
    its own tokens only, causally from a prompt's start."""
    model = dep.model
    p = model.params
    prefill_rows = sum(n for _, n in pieces)
    rows = decode_rows + prefill_rows
    touched = experts_touched_fraction(model, rows, eff.expert_spread)
    moved = (m.shared + m.experts * touched + decode_rows * _kv_bytes(model, m.kv_layout, context)
             + sum(_kv_bytes(model, m.kv_layout, start) for start, _ in pieces))
    wide = m.register_head
    attn = attention_flops(model, decode_rows, context, causal=False, register_head=wide)
    for start, n in pieces:
        attn += (attention_flops(model, n, n, causal=True, register_head=wide) if start == 0 else
                 attention_flops(model, n, start + n / 2, causal=False, register_head=wide))
    dense_params = flop_params(model) - p.experts_active
    t_flop, t_stream = _matmul_seconds(2 * rows * dense_params, m.shared, rows, eff.gemm_half_rows, m.achieved, m)
    t_flop += attn / m.attention
    if model.is_moe:
        per_expert = rows * model.experts_per_token / (model.num_experts * touched)
        experts_s, experts_stream = _matmul_seconds(2 * rows * p.experts_active, m.experts * touched, per_expert,
                                                    eff.expert_half_rows, m.experts_achieved, m)
        t_flop, t_stream = t_flop + experts_s, t_stream + experts_stream
    t_mem = moved / m.bw
    per_step_ms = eff.step_overhead_ms + eff.moe_layer_overhead_ms * model.moe_layers
    if dep.enforce_eager:
        per_step_ms += eff.eager_layer_overhead_ms * model.num_layers
    overhead = (per_step_ms + eff.seq_overhead_ms * decode_rows) / 1000
    return _Step(max(t_mem, t_flop) + overhead + _tp_comm_seconds(dep, rows, m.gguf), t_mem, t_flop, t_stream, moved)


def _ceiling_step(dep: Deployment, m: _Machine, batch: int, context: float, spread: float) -> float:
    """Pure decode at spec bandwidth and compute, every matmul at peak, no overhead."""
    moved = (
        m.shared
        + m.experts * experts_touched_fraction(dep.model, batch, spread)
        + batch * _kv_bytes(dep.model, m.kv_layout, context)
    )
    matmuls = peak_matmul_seconds(dep.model, batch, m.peak, m.experts_peak)
    attention = attention_flops(dep.model, batch, context, causal=False)
    return max(moved / m.bw_spec, matmuls + attention / m.attention_peak)


def prefill_chunk(dep: Deployment, eff: Efficiency) -> int:
    """Prompt tokens one forward pass takes: the deployment's budget (vLLM max-num-batched-tokens,
    llama.cpp n_ubatch) where it sets one, else the engine's default on this hardware (vLLM's is
    smaller on GPUs under 70 GiB and on A100s), else its constant. The memory plan takes the same."""
    if dep.max_num_batched_tokens:
        return dep.max_num_batched_tokens
    from sparkserve.engines import find_engine

    engine = find_engine(dep.engine)
    return (engine.default_prefill_chunk(dep.hardware) if engine else None) or eff.prefill_chunk


def prefill_seconds(
    dep: Deployment, eff: Efficiency, m: _Machine, prompt_len: float, decode_rows: float = 0.0, context: float = 0.0,
    cached: float = 0.0,
) -> float:
    """One prompt in the engine's chunks, each sharing its step with `decode_rows` decoding sequences; the
    first `cached` tokens are already in the prefix cache (attended to, not computed)."""
    return _prefill_steps(dep, eff, m, prompt_len, decode_rows, context, cached)[0]


def _prefill_steps(dep: Deployment, eff: Efficiency, m: _Machine, prompt_len: float, decode_rows: float = 0.0,
                   context: float = 0.0, cached: float = 0.0) -> tuple[float, int]:
    """(seconds, steps) of one prompt in the engine's chunks beside `decode_rows` decoding sequences."""
    total, done, steps = 0.0, min(max(cached, 0.0), prompt_len), 0
    chunk = max(1.0, prefill_chunk(dep, eff) - decode_rows)
    while done < prompt_len:
        rows = min(chunk, prompt_len - done)
        total += _step(dep, eff, m, decode_rows, context, ((done, rows),)).seconds
        done += rows
        steps += 1
    return total, steps


def _batch_prefill_seconds(dep: Deployment, eff: Efficiency, m: _Machine, prompts: int, prompt_len: float) -> float:
    """`prompts` prompts arriving together, packed into steps of at most prefill_chunk tokens."""
    budget = prefill_chunk(dep, eff)
    if prompts == 1 or prompt_len >= budget:
        return prompts * prefill_seconds(dep, eff, m, prompt_len)
    per_step = max(1, int(budget // prompt_len))
    full, rest = divmod(prompts, per_step)
    one = _step(dep, eff, m, 0, 0, ((0, prompt_len),) * per_step).seconds
    return full * one + (_step(dep, eff, m, 0, 0, ((0, prompt_len),) * rest).seconds if rest else 0.0)


def _burst_decode_tps(dep: Deployment, eff: Efficiency, m: _Machine, batch: int, prompt: float, output: int,
                      decode_step: float, all_prompts: float) -> float:
    """`batch` requests sent together (their prompts take `all_prompts` seconds, packed into steps of the budget),
    timed from the first reply's first token to the last reply's last token. The first token comes once the
    first step's prompts are in; the other prompts are prefilled after it, and the last of them then decodes
    output - 1 more tokens beside the others."""
    if output <= 1:
        return 0.0
    budget = prefill_chunk(dep, eff)
    first = max(1, min(batch, int(budget // prompt))) if 0 < prompt < budget else 1
    span = all_prompts - _batch_prefill_seconds(dep, eff, m, first, prompt) if prompt and batch > first else 0.0
    return batch * (output - 1) / (span + (output - 1) * decode_step)


def _burst_seconds(dep: Deployment, eff: Efficiency, m: _Machine, work: Workload, batch: int) -> float | None:
    """The whole run of `batch` requests sent at once to a KV cache of `work.kv_tokens` that holds fewer of them,
    replayed with the engine's admission (plan/paged_queue.py) and each step priced; None when all fit, when the
    engine's admission is not modelled, or when some layers keep less than the whole context (sliding windows,
    recurrent state: the cache then holds more of these requests than its token count says)."""
    from sparkserve.engines import find_engine

    model = dep.model
    need = work.prompt_len + max(work.output_len, 1)
    if not work.kv_tokens or batch * need <= work.kv_tokens or model.full_attention_layers != model.num_layers:
        return None
    engine = find_engine(dep.engine)
    gate = engine.admission_gate(dep.engine_version) if engine else None
    if gate is None:
        return None
    block = QUEUE_BLOCK_TOKENS
    run = run_queue(batch, work.prompt_len, max(work.output_len, 1), prefill_chunk(dep, eff), block,
                    work.kv_tokens // block, gate, dep.prefix_caching, dep.max_num_seqs or 1024)
    if run is None:
        return None
    return sum(n * _step(dep, eff, m, s.decode_rows, s.decode_context, s.pieces).seconds for s, n in run.steps)


def prefill_queue_seconds(prefill: float, others: int, cycle: float) -> float:
    """Mean wait of a new prompt behind the prompts of the `others` clients (Pollaczek-Khinchine, M/D/1).

    Each client sends its next request when the last one ends, so it brings a prompt of `prefill` seconds
    once per `cycle` (its request overhead, prefill and decode) plus the wait itself. The prompts keep the
    engine's prefill busy a share rho = others x prefill / (cycle + wait); a new prompt finds the one in
    progress half done and the queued ones whole: wait = rho x prefill / (2 (1 - rho)). A longer wait
    stretches the cycle and lowers rho; with c = cycle + wait and a = others x prefill that fixed point is
    the larger root of c^2 - (cycle + a) c + cycle a - a prefill / 2 = 0, which keeps rho below 1."""
    if others <= 0 or prefill <= 0:
        return 0.0
    a = others * prefill
    c = ((cycle + a) + math.sqrt((cycle - a) ** 2 + 2 * a * prefill)) / 2
    return max(0.0, c - cycle)


def speed(dep: Deployment, work: Workload, eff: Efficiency | None = None) -> SpeedPlan:
    eff = eff or efficiency_for(dep.engine, dep.hardware)
    m = _machine(dep, eff)
    batch = max(1, work.batch)
    context = work.context if work.context is not None else work.prompt_len + work.output_len // 2
    cached = work.prompt_len * min(max(work.prefix_hit, 0.0), 1.0)
    prompt = work.prompt_len - cached  # tokens to compute; the cached ones are attended to, not computed

    pure = _step(dep, eff, m, batch, context)
    # Under load each request brings `prompt` tokens to prefill once per `output_len` steps. The prompt
    # goes in whole chunks of the step budget that the running batch shares (a chunk reads the weights,
    # and all the experts its tokens route to, once), so the batch's ITL carries, averaged over the
    # output, batch x what those chunk steps cost beyond plain decode steps.
    itl = pure.seconds
    if work.mixed_prefill and batch > 1 and work.output_len > 0 and prompt > 0:
        chunked, steps = _prefill_steps(dep, eff, m, work.prompt_len, decode_rows=batch, context=context,
                                        cached=cached)
        itl += batch * max(0.0, chunked - steps * pure.seconds) / work.output_len

    first = (
        prefill_seconds(dep, eff, m, work.prompt_len, decode_rows=batch - 1, context=context, cached=cached)
        if prompt
        else (_step(dep, eff, m, batch, context).seconds)
    )
    out = work.output_len
    overhead = eff.request_overhead_ms / 1000
    # A new request joins at the next boundary of the decode steps (half a step on average) and waits
    # for the prompts of the other batch - 1 clients that arrived before it.
    step_wait = pure.seconds / 2 if batch > 1 else 0.0
    cycle = overhead + step_wait + first + max(out - 1, 0) * itl
    queue = prefill_queue_seconds(first if prompt else 0.0, batch - 1, cycle)
    ttft = overhead + step_wait + queue + first
    output_tps = batch * out / (ttft + max(out - 1, 0) * itl) if out else 0.0

    prefill_s = _batch_prefill_seconds(dep, eff, m, batch, prompt) if prompt else 0.0
    burst_tps = _burst_decode_tps(dep, eff, m, batch, prompt, out, pure.seconds, prefill_s)
    if prompt and not cached:
        prefill_s = _burst_seconds(dep, eff, m, work, batch) or prefill_s
    decode_tps = 1.0 / itl
    return SpeedPlan(
        decode_tps=decode_tps,
        aggregate_tps=batch * decode_tps,
        output_tps=output_tps,
        prefill_tps=batch * prompt / prefill_s if prefill_s else 0.0,
        ttft_ms=ttft * 1000,
        itl_ms=itl * 1000,
        burst_decode_tps=burst_tps,
        roofline_decode_tps=1.0 / _ceiling_step(dep, m, batch, context, eff.expert_spread),
        decode_step_ms=pure.seconds * 1000,
        bytes_per_step_gb=pure.moved / 1e9,
        bound=pure.bound,
        efficiency=eff,
    )

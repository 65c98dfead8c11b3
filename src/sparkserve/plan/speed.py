"""How fast a deployment can decode and prefill, and the physical ceiling it cannot pass.

A decode step streams the weights it touches (for MoE, the experts the batch routes to) and
every sequence's KV cache from memory; it takes the longer of that traffic over the achieved
bandwidth and its FLOPs over the achieved compute, plus the engine's fixed cost per step and
the all-reduces of tensor parallelism. Prefill is FLOPs (weights and causal attention) over
achieved compute. The ceiling is the same traffic at 100 % of spec bandwidth and compute with
no overhead: no engine can beat it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparkserve.models.spec import ModelSpec
from sparkserve.plan.calibration import Efficiency, efficiency_for
from sparkserve.plan.memory import Deployment, group_weight_bytes, kv_bytes_per_layer_token
from sparkserve.plan.quant import GGUF_ENGINES, compute_dtype


@dataclass(frozen=True)
class Workload:
    batch: int = 1  # concurrent sequences decoding together
    prompt_len: int = 512
    output_len: int = 256
    context: int | None = None  # tokens already in each sequence's KV cache while decoding


@dataclass(frozen=True)
class SpeedPlan:
    decode_tps: float  # tokens/s of one request at the batch
    aggregate_tps: float  # output tokens/s of the whole batch
    prefill_tps: float  # prompt tokens/s of one prompt
    ttft_ms: float  # one prompt on an idle server
    roofline_decode_tps: float  # one request at the batch, 100 % spec bandwidth and compute, no overhead
    decode_step_ms: float
    bytes_per_step_gb: float  # memory traffic of one decode step, all devices
    bound: str  # "memory" or "compute"
    efficiency: Efficiency


def experts_touched_fraction(model: ModelSpec, batch: int) -> float:
    """Expected share of each MoE layer's experts that `batch` tokens route to (uniform routing)."""
    if not model.is_moe:
        return 1.0
    return 1.0 - (1.0 - model.experts_per_token / model.num_experts) ** batch


def decode_bytes(dep: Deployment, batch: int, context: int) -> float:
    """Bytes one decode step reads, over all devices."""
    model = dep.model
    groups = group_weight_bytes(model, dep.quant, dep.engine)
    head = groups["lm_head"] or groups["embedding"]  # tied embeddings are read once, as the output projection
    dense = sum(groups[g] for g in ("attention", "dense_mlp", "moe_shared", "other"))
    experts = groups["experts"] * experts_touched_fraction(model, batch)
    kv = batch * kv_bytes_per_context(dep, context)
    return dense + head + experts + kv


def kv_bytes_per_context(dep: Deployment, context: int) -> float:
    model = dep.model
    kv_dtype = dep.kv_cache_dtype if dep.kv_cache_dtype != "auto" else ("f16" if dep.engine in GGUF_ENGINES else "auto")
    # Each tensor-parallel rank reads its own KV heads; heads replicate when ranks outnumber them.
    ranks = 1 if dep.engine in GGUF_ENGINES else dep.devices
    per_layer_token = kv_bytes_per_layer_token(model, kv_dtype, ranks) * ranks
    window = model.sliding_window or context
    # DeepSeek sparse attention reads the latents of its index_topk tokens (the indexer keys are a small share)
    attended = min(context, model.index_topk) if model.index_topk else context
    layer_tokens = model.full_attention_layers * attended + model.sliding_window_layers * min(context, window)
    # linear-attention / Mamba layers read and write their fixed state once per step instead
    return layer_tokens * per_layer_token + 2 * model.recurrent_state_bytes()


def flop_params(model: ModelSpec, batch: int = 1) -> float:
    """Parameters a token multiplies through (input embeddings are a lookup, not a matmul)."""
    p = model.params
    head = p.lm_head or p.embedding
    return p.attention + p.dense_mlp + p.moe_shared + p.other + head + p.experts_active


def attention_flops(model: ModelSpec, queries: int, context: int, causal: bool) -> float:
    """QK^T and AV for `queries` tokens against `context` keys (halved when causal over itself)."""
    q_dim = model.num_attention_heads * model.head_dim
    window = model.sliding_window or context
    keys_full = context / 2 if causal else context
    keys_local = min(keys_full, window)
    per_query = model.full_attention_layers * keys_full + model.sliding_window_layers * keys_local
    return 4 * queries * q_dim * per_query


def gemm_efficiency(rows: float, half_rows: float) -> float:
    """Tensor cores fill up with rows: a matmul of few tokens (or few tokens per expert) runs below peak."""
    return rows / (rows + half_rows)


def _tp_comm_seconds(dep: Deployment, tokens: int) -> float:
    """Two all-reduces of the hidden state per layer across tensor-parallel ranks."""
    if dep.devices == 1 or dep.engine in GGUF_ENGINES:
        return 0.0
    hw = dep.hardware
    link = hw.inter_link if dep.nodes > 1 else hw.intra_link
    if link is None:
        return 0.0
    n = dep.devices
    payload = tokens * dep.model.hidden_size * 2 * 2 * (n - 1) / n
    per_allreduce = link.latency_us * 1e-6 * math.log2(n) * 2 + payload / (link.bandwidth_gbs * 1e9)
    return 2 * dep.model.num_layers * per_allreduce


def _parallel_devices(dep: Deployment) -> int:
    """Devices whose bandwidth adds up for one step: tensor parallel yes, llama.cpp's layer split no."""
    return 1 if dep.engine in GGUF_ENGINES else dep.devices


def speed(dep: Deployment, work: Workload) -> SpeedPlan:
    hw, model = dep.hardware, dep.model
    eff = efficiency_for(dep.engine, hw)
    batch = max(1, work.batch)
    context = work.context if work.context is not None else work.prompt_len + work.output_len // 2
    par = _parallel_devices(dep)
    bw_spec = hw.bandwidth_gbs * 1e9 * par
    bw = hw.effective_bandwidth_gbs * 1e9 * eff.bandwidth * par
    dtype = compute_dtype(dep.quant, hw, dep.engine)
    peak = hw.dense_tflops(dtype) * 1e12 * par
    achieved = peak * eff.compute

    moved = decode_bytes(dep, batch, context)
    flops = 2 * flop_params(model) * batch + attention_flops(model, batch, context, causal=False)
    t_mem = moved / bw
    t_flop = flops / achieved
    step = max(t_mem, t_flop) + step_overhead_s(dep, eff) + _tp_comm_seconds(dep, batch)
    ceiling_step = max(moved / bw_spec, flops / peak)

    prefill_s = prefill_seconds(dep, work.prompt_len, eff, achieved, bw)
    return SpeedPlan(
        decode_tps=1.0 / step,
        aggregate_tps=batch / step,
        prefill_tps=work.prompt_len / prefill_s if work.prompt_len else 0.0,
        ttft_ms=(prefill_s + eff.request_overhead_ms / 1000) * 1000,
        roofline_decode_tps=1.0 / ceiling_step,
        decode_step_ms=step * 1000,
        bytes_per_step_gb=moved / 1e9,
        bound="memory" if t_mem >= t_flop else "compute",
        efficiency=eff,
    )


def step_overhead_s(dep: Deployment, eff: Efficiency) -> float:
    """Fixed cost of one forward pass: the engine's own, plus the extra kernels of each MoE layer."""
    return (eff.step_overhead_ms + eff.moe_layer_overhead_ms * dep.model.moe_layers) / 1000


def prefill_seconds(dep: Deployment, prompt_len: int, eff: Efficiency, achieved_flops: float, bw: float) -> float:
    """One prompt, in the engine's chunks: each chunk's matmuls over achieved compute (rows per
    matmul, per expert for MoE, set how full the tensor cores are), never faster than streaming
    the weights that chunk touches."""
    model = dep.model
    p = model.params
    expert_bytes = group_weight_bytes(model, dep.quant, dep.engine)["experts"]
    other_bytes = decode_bytes(dep, 1, 0) - expert_bytes * experts_touched_fraction(model, 1)
    dense_params = flop_params(model) - p.experts_active
    total, done = 0.0, 0
    while done < prompt_len:
        rows = min(eff.prefill_chunk, prompt_len - done)
        attn = attention_flops(model, rows, done + rows, causal=True) if done == 0 else (
            attention_flops(model, rows, done + rows // 2, causal=False))
        t = (2 * rows * dense_params + attn) / (achieved_flops * gemm_efficiency(rows, eff.gemm_half_rows))
        if model.is_moe:
            per_expert = rows * model.experts_per_token / model.num_experts
            t += 2 * rows * p.experts_active / (achieved_flops * gemm_efficiency(per_expert, eff.gemm_half_rows))
        touched = other_bytes + expert_bytes * experts_touched_fraction(model, rows)
        total += max(t, touched / bw) + _tp_comm_seconds(dep, rows) + step_overhead_s(dep, eff)
        done += rows
    return total

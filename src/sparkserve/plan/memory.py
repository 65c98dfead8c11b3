"""Where memory goes when a model is served: weights, activations, graphs, KV cache, what is left.

Pure functions over a `Deployment`; no I/O. The vLLM accounting follows its start-up memory
profiling: the budget is `gpu_memory_utilization x total GPU memory` per device; weights,
the activation peak of a profiling forward pass of `max_num_batched_tokens`, memory allocated
outside PyTorch and CUDA graphs come off it, and the rest becomes KV-cache blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.models.spec import ModelSpec
from sparkserve.plan import kv_kinds
from sparkserve.plan.calibration import VllmMemoryConstants, vllm_memory_constants
from sparkserve.plan.quant import GGUF_ENGINES, WeightFormat, kv_dtype_bytes, weight_format
from sparkserve.plan.settings import EngineSettings, GgufSettings, VllmSettings
from sparkserve.units import GIB


@dataclass(frozen=True)
class Deployment:
    """One model served by one engine on `gpus` devices per node over `nodes` nodes."""

    hardware: HardwareProfile
    model: ModelSpec
    quant: WeightFormat
    engine: str = "vllm"
    gpus: int = 1
    nodes: int = 1
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    num_ctx: int | None = None  # Ollama / llama.cpp context per request
    num_parallel: int | None = None  # Ollama parallel requests per model
    engine_version: str | None = None  # None: the current release
    prefix_caching: bool = True  # vLLM V1 and SGLang keep computed prompt blocks for reuse unless told not to
    # Weight groups the engine quantises to `quant` on load although the checkpoint keeps them in
    # 16 bit (the DGX Spark vLLM builds' `--mxfp4-layers moe,qkv,o,lm_head` does this for gpt-oss).
    extra_quantized: tuple[str, ...] = ()
    # vLLM runs the quantised matmuls through Marlin: BF16 compute (--linear-backend marlin, --moe-backend
    # marlin, or VLLM_NVFP4_GEMM_BACKEND=marlin, which community DGX Spark NVFP4 recipes set for sm_121:
    # https://huggingface.co/bg-digitalservices/Gemma-4-26B-A4B-it-NVFP4A16).
    marlin: bool = False
    # The attention kernel the service names (vLLM --attention-backend); None: the engine's own choice.
    attention_backend: str | None = None

    @property
    def devices(self) -> int:
        return self.gpus * self.nodes


@dataclass
class MemoryPlan:
    engine: str
    devices: int
    device_memory_gib: float  # what one device reports as total
    budget_gib: float  # memory the engine may use, all devices
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_cache_gib: float
    kv_tokens: int
    kv_bytes_per_token: float  # over all devices
    max_model_len: int
    max_concurrency: float
    total_gib: float  # what the engine holds once started, all devices
    settings: EngineSettings  # what this plan was made with
    fits: bool = True
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Weights

_GROUPS = ("embedding", "lm_head", "attention", "dense_mlp", "experts", "moe_shared", "other", "vision",
           "per_layer_embedding")


def group_bits(model: ModelSpec, fmt: WeightFormat, engine: str) -> dict[str, float]:
    """Bits per parameter of each ParamCounts group for this format and engine."""
    sixteen = 16.0
    q = fmt.bits
    if fmt.bits >= 16:
        return dict.fromkeys(_GROUPS, fmt.bits)
    if engine in GGUF_ENGINES:
        # GGUF files quantise every matrix; the K-quant averages already include the mix.
        # gpt-oss GGUFs keep MXFP4 experts and store the rest as Q8_0 (ggml-org/gpt-oss-20b-GGUF: 12.1 GB).
        rest = 8.5 if fmt.id == "mxfp4" else q
        bits = dict.fromkeys(("embedding", "lm_head", "attention", "dense_mlp", "moe_shared", "per_layer_embedding"),
                             rest)
        bits.update(experts=q, other=sixteen, vision=sixteen)
        return bits
    # HF quantised checkpoints (FP8, AWQ, GPTQ, NVFP4, MXFP4) keep embeddings, lm_head, norms and
    # the vision tower in 16 bit; the checkpoint may keep more (gpt-oss: attention and router).
    bits = dict(
        embedding=sixteen,
        lm_head=sixteen,
        other=sixteen,
        vision=sixteen,
        per_layer_embedding=sixteen,
        attention=q,
        dense_mlp=q,
        experts=q,
        moe_shared=q,
    )
    if fmt.id == "mxfp4":
        bits.update(attention=sixteen, dense_mlp=sixteen, moe_shared=sixteen)
    for group in model.bf16_modules:
        bits[group] = sixteen
    if model.expert_format and fmt.id == model.checkpoint_quant:
        # the checkpoint's routed experts in their own format (DeepSeek-V4: MXFP4 experts in an FP8 checkpoint)
        bits["experts"] = weight_format(model.expert_format).bits
    return bits


def uses_checkpoint_bytes(model: ModelSpec, fmt: WeightFormat, engine: str) -> bool:
    """The engine loads the checkpoint as published, so its safetensors headers give the weight bytes."""
    if engine in GGUF_ENGINES or not model.checkpoint_bytes:
        return False
    own = model.checkpoint_quant or ("bf16" if model.checkpoint_dtype in ("bfloat16", "float16") else "fp32")
    if own == "bf16":
        return fmt.id in ("bf16", "fp16")
    return own == fmt.id


def group_weight_bytes(model: ModelSpec, fmt: WeightFormat, engine: str,
                       extra_quantized: tuple[str, ...] = ()) -> dict[str, float]:
    """Bytes of each ParamCounts group as the engine holds them: the real tensors when the checkpoint is
    loaded as published (MTP heads left out: vLLM loads them only for MTP speculative decoding), else
    parameters x bits of the format; `extra_quantized` groups are held at the format's bits."""
    if uses_checkpoint_bytes(model, fmt, engine):
        real = dict(model.checkpoint_bytes)
        held = {g: float(real.get(g, 0)) for g in _GROUPS}
        held.update({g: getattr(model.params, g) * fmt.bits / 8 for g in extra_quantized})
        return held
    bits = group_bits(model, fmt, engine)
    bits.update(dict.fromkeys(extra_quantized, fmt.bits))
    estimate = {g: getattr(model.params, g) * bits[g] / 8 for g in _GROUPS}
    if engine in GGUF_ENGINES and model.gguf_bytes and model.gguf_quant == fmt.id and sum(estimate.values()):
        # the tag's GGUF layers as published (registry manifest), shared out over the groups as estimated
        scale = model.gguf_bytes / sum(estimate.values())
        return {g: b * scale for g, b in estimate.items()}
    return estimate


def weight_bytes(model: ModelSpec, fmt: WeightFormat, engine: str, extra_quantized: tuple[str, ...] = (),
                 hardware: HardwareProfile | None = None) -> float:
    """What the engine holds after loading: the experts as its MoE kernel pads them (Engine.expert_padding), which
    can depend on the GPU (`hardware`)."""
    from sparkserve.engines import find_engine

    groups = group_weight_bytes(model, fmt, engine, extra_quantized)
    found = find_engine(engine)
    padding = found.expert_padding(model, fmt.id, hardware) if found and groups["experts"] else 1.0
    return sum(groups.values()) + groups["experts"] * (padding - 1)


# ---------------------------------------------------------------------------------------------
# KV cache


def kv_heads_per_device(model: ModelSpec, tp: int) -> int:
    """vLLM splits KV heads over tensor-parallel ranks and replicates them when tp > heads."""
    return max(1, math.ceil(model.num_kv_heads / tp))


def kv_bytes_per_token_device(model: ModelSpec, kv_dtype: str, tp: int, *, layers: int | None = None) -> float:
    """Cache bytes one token adds on one device, over `layers` attention layers (default: all of them)."""
    n_layers = model.attention_layers if layers is None else layers
    return kv_bytes_per_layer_token(model, kv_dtype, tp) * n_layers


def kv_bytes_per_layer_token(model: ModelSpec, kv_dtype: str, tp: int) -> float:
    if model.is_mla:
        # vLLM's MLA backends cache one latent (kv_lora_rank + qk_rope_head_dim) per token, replicated on every
        # tensor-parallel rank, not split by heads.
        per_layer = (model.kv_lora_rank + model.qk_rope_head_dim) * kv_dtype_bytes(kv_dtype)
        if model.index_head_dim and kv_dtype_bytes(kv_dtype) == 1:
            # sparse MLA's fp8_ds_mla layout: FP8 latent, one fp32 scale per 128, the rope part kept in BF16
            # (vLLM: "Using DeepSeek's fp8_ds_mla KV cache format", 656 bytes for DeepSeek-V3.2)
            per_layer = model.kv_lora_rank + model.kv_lora_rank // 128 * 4 + model.qk_rope_head_dim * 2
        if model.index_head_dim:
            # DeepSeek-V3.2's indexer key cache: FP8 keys and one fp32 scale per 128 (vLLM DeepseekV32IndexerCache)
            per_layer += model.index_head_dim + model.index_head_dim // 128 * 4
        return per_layer
    return 2 * kv_heads_per_device(model, tp) * model.head_dim * kv_dtype_bytes(kv_dtype)


def recurrent_state_bytes_device(model: ModelSpec, tp: int) -> float:
    """One sequence's linear-attention / Mamba state on one device: vLLM splits the heads (and the conv
    channels) over tensor-parallel ranks."""
    return model.recurrent_state_bytes() / tp


_T = TypeVar("_T")


def _given(value: _T | None, default: _T) -> _T:
    """The user's setting when there is one (0 included: validation is the caller's), else the default."""
    return default if value is None else value


def _kv_dtype(dep: Deployment) -> str:
    """vLLM's "auto" KV dtype is the model's activation dtype: 4 bytes only when it runs in float32."""
    if dep.kv_cache_dtype == "auto" and dep.quant.id == "fp32":
        return "fp32"
    return dep.kv_cache_dtype


def tokens_per_request_layers(model: ModelSpec, length: int, block_size: int) -> int:
    """Layer-token slots one request of `length` tokens holds: sliding layers keep only the window."""
    full = model.full_attention_layers * length
    if model.sliding_window_layers and model.sliding_window:
        held = min(length, model.sliding_window + block_size)
        return full + model.sliding_window_layers * held
    return full


__all__ = [
    "GIB",
    "Deployment",
    "MemoryPlan",
    "group_bits",
    "kv_bytes_per_layer_token",
    "kv_bytes_per_token_device",
    "recurrent_state_bytes_device",
    "tokens_per_request_layers",
    "weight_bytes",
]


# ---------------------------------------------------------------------------------------------
# vLLM


def vllm_activation_peak_bytes(
    model: ModelSpec,
    tp: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    constants: VllmMemoryConstants | None = None,
) -> float:
    """Peak of vLLM's profiling run: a forward pass of `max_num_batched_tokens`, then a dry run of
    the sampler on `min(max_num_seqs, max_num_batched_tokens)` rows of full-vocabulary logits.

    They run one after the other, so the peak is the larger of the two, not their sum; it grows
    with the batched tokens and the vocabulary, not with max-model-len. The bytes per logit
    (fp32 logits, probabilities and sort indices) and the base are fitted on the torch peaks of
    vLLM start-up logs by benchmarks/fit_calibration.py (plan/calibration.json)."""
    c = constants or vllm_memory_constants()
    h = model.hidden_size
    n = max_num_batched_tokens
    q_dim = model.num_attention_heads * model.head_dim
    attn = (q_dim + 2 * model.num_kv_heads * model.head_dim) / tp + q_dim / tp
    if model.is_moe:
        k = model.experts_per_token
        # fused MoE keeps three intermediate caches: gate_up (2I), activated (I) and the k outputs (h).
        mlp = k * (3 * model.moe_intermediate_size / tp + h)
    else:
        mlp = 3 * model.intermediate_size / tp
    forward = n * 2 * (2 * h + max(attn, mlp))
    sampler = min(max_num_seqs, n) * model.vocab_size * c.sampler_bytes_per_logit
    return c.profile_base_gib * GIB + max(forward, sampler)


def vllm_non_torch_bytes(devices: int, constants: VllmMemoryConstants | None = None) -> float:
    """Allocations outside PyTorch's allocator: cuBLAS workspaces on one GPU; with tensor
    parallelism also NCCL, custom all-reduce and FlashInfer all-reduce workspaces, whatever the
    model (fitted on start-up logs, plan/calibration.json)."""
    c = constants or vllm_memory_constants()
    return (c.non_torch_gib_single if devices == 1 else c.non_torch_gib_tp) * GIB


def vllm_cuda_graph_bytes(model: ModelSpec, devices: int, constants: VllmMemoryConstants | None = None) -> float:
    """CUDA graphs for the decode batch sizes vLLM captures (51 up to 512): a pool shared by the
    graphs, growing with layers (one piecewise graph per layer), more with tensor parallelism
    (fitted on the graph sizes start-up logs print, plan/calibration.json)."""
    c = constants or vllm_memory_constants()
    return (
        c.cuda_graph_base_gib
        + c.cuda_graph_per_layer_gib * model.num_layers
        + (c.cuda_graph_tp_gib if devices > 1 else 0.0)
    ) * GIB


@dataclass(frozen=True)
class KvLayout:
    """How vLLM's hybrid allocator lays layers out: equal-size groups of layers share one pool of equal-size
    pages, so sliding-window models are padded to whole groups (gemma-3-27b: 62 layers -> 7 groups of 10)
    and linear-attention / Mamba layers take one page per sequence holding their whole state."""

    group_size: int
    groups: int
    full_groups: int
    recurrent_groups: int = 0
    block_size: int = 16  # tokens per attention page

    @property
    def layer_slots(self) -> int:
        return self.group_size * self.groups

    @property
    def sliding_groups(self) -> int:
        return self.groups - self.full_groups - self.recurrent_groups


# vLLM HybridAttentionMambaModelConfig: the attention block size is a multiple of 16 tokens
# (kernel_block_alignment_size) large enough that one attention page holds one layer's recurrent state.
VLLM_HYBRID_BLOCK_ALIGNMENT = 16


def kv_layout(model: ModelSpec, block_size: int = 16, per_layer_token: float = 0.0, tp: int = 1) -> KvLayout:
    full, local, recurrent = model.full_attention_layers, model.sliding_window_layers, model.recurrent_layers
    if recurrent and per_layer_token:
        state_page = recurrent_state_bytes_device(model, tp) / recurrent
        align = VLLM_HYBRID_BLOCK_ALIGNMENT
        block_size = max(block_size, align * math.ceil(state_page / (align * per_layer_token)))
    counts = [n for n in (full, local, recurrent) if n]
    if len(counts) <= 1:
        return KvLayout(
            group_size=max(1, model.attention_layers or recurrent),
            groups=1,
            full_groups=1 if full else 0,
            recurrent_groups=0 if full else (1 if recurrent else 0),
            block_size=block_size,
        )
    size = min(counts)
    full_groups = math.ceil(full / size)
    local_groups = math.ceil(local / size)
    recurrent_groups = math.ceil(recurrent / size)
    return KvLayout(
        group_size=size,
        groups=full_groups + local_groups + recurrent_groups,
        full_groups=full_groups,
        recurrent_groups=recurrent_groups,
        block_size=block_size,
    )


def vllm_memory(dep: Deployment, constants: VllmMemoryConstants | None = None) -> MemoryPlan:
    from sparkserve.engines import vllm as engine

    hw, model = dep.hardware, dep.model
    tp = dep.devices
    defaults = engine.defaults_for(hw, dep.engine_version)
    util = _given(dep.gpu_memory_utilization, defaults.gpu_memory_utilization)
    mnbt = _given(dep.max_num_batched_tokens, defaults.max_num_batched_tokens)
    mns = _given(dep.max_num_seqs, defaults.max_num_seqs)
    block = defaults.block_size
    max_len = _given(dep.max_model_len, model.max_position_embeddings)
    kv_dtype = _kv_dtype(dep)

    budget = util * hw.gpu_memory_gib * GIB
    weights = weight_bytes(model, dep.quant, dep.engine, dep.extra_quantized, hw) / tp
    act = vllm_activation_peak_bytes(model, tp, mnbt, mns, constants)
    non_torch = vllm_non_torch_bytes(tp, constants)
    graphs = 0.0 if dep.enforce_eager else vllm_cuda_graph_bytes(model, tp, constants)
    graphs_in_budget = graphs if engine.subtracts_cuda_graphs(dep.engine_version) else 0.0
    kv_avail = max(0.0, budget - weights - act - non_torch - graphs_in_budget)

    if model.cache_kinds:
        kinds = kv_kinds.layout(model, kv_dtype, tp, block)
        block, page = kinds.block_tokens, kinds.block_bytes
        blocks = int(kv_avail // page)
        per_request_blocks = kinds.request_blocks(max_len, mnbt)
        max_conc = blocks / per_request_blocks if per_request_blocks else 0.0
        kv_tokens = int(max_conc * max_len)  # vLLM's "GPU KV cache size": max concurrency x max-model-len
        per_token = kv_kinds.growth_bytes_per_token(model, kv_dtype, tp)

        def fitting_len() -> int:
            return kv_kinds.largest_len_that_fits(kinds, blocks, mnbt, max(max_len, model.max_position_embeddings))
    else:
        per_layer_token = kv_bytes_per_layer_token(model, kv_dtype, tp)
        layout = kv_layout(model, block, per_layer_token, tp)
        block = layout.block_size
        page = block * per_layer_token * layout.group_size  # one block of every layer in a group
        blocks = int(kv_avail // page)
        kv_tokens = blocks * block // layout.groups
        per_request_blocks = request_blocks(model, layout, max_len, block, mnbt)
        max_conc = blocks / per_request_blocks if per_request_blocks else 0.0
        per_token = per_layer_token * model.attention_layers

        def fitting_len() -> int:
            return _largest_len_that_fits(model, layout, blocks, block, mnbt)

    plan = MemoryPlan(
        engine=dep.engine,
        devices=tp,
        device_memory_gib=hw.gpu_memory_gib,
        budget_gib=budget * tp / GIB,
        weights_gib=weights * tp / GIB,
        activation_gib=act * tp / GIB,
        non_torch_gib=non_torch * tp / GIB,
        cuda_graph_gib=graphs * tp / GIB,
        kv_cache_gib=kv_avail * tp / GIB,
        kv_tokens=kv_tokens,
        kv_bytes_per_token=per_token * tp,
        max_model_len=max_len,
        max_concurrency=max_conc,
        total_gib=(budget + graphs - graphs_in_budget) * tp / GIB,
        settings=VllmSettings(
            gpu_memory_utilization=util,
            max_model_len=max_len,
            max_num_batched_tokens=mnbt,
            max_num_seqs=mns,
            block_size=block,
            kv_cache_dtype=dep.kv_cache_dtype,
            tensor_parallel_size=tp,
            enforce_eager=dep.enforce_eager,
        ),
    )
    fixed = weights + act + non_torch + graphs_in_budget
    if weights > budget:
        plan.fits = False
        plan.reasons.append(
            f"weights need {weights / GIB:.1f} GiB per GPU but the budget is {budget / GIB:.1f} GiB "
            f"({util:.2f} x {hw.gpu_memory_gib:.1f} GiB): use a smaller quantisation or more GPUs"
        )
    elif blocks == 0:
        plan.fits = False
        plan.reasons.append(
            f"nothing is left for the KV cache: weights, activations and graphs take {fixed / GIB:.1f} GiB "
            f"of the {budget / GIB:.1f} GiB budget"
        )
    elif max_conc < 1:
        plan.fits = False
        fit_len = fitting_len()
        need = fixed + per_request_blocks * page
        need_util = need / (hw.gpu_memory_gib * GIB)
        hint = f"lower --max-model-len to {fit_len}" if fit_len else "use more memory"
        if need_util < 0.99:
            hint += f" or raise --gpu-memory-utilization to {math.ceil(need_util * 100) / 100:.2f}"
        plan.reasons.append(
            f"KV cache holds {kv_tokens:,} tokens, max-model-len is {max_len:,}: vLLM refuses to start; {hint}"
        )
    if max_len > model.max_position_embeddings:
        plan.warnings.append(
            f"max-model-len {max_len:,} is above the model's {model.max_position_embeddings:,} positions; "
            "vLLM refuses it unless RoPE scaling is configured"
        )
    return plan


def request_blocks(model: ModelSpec, layout: KvLayout, length: int, block: int, max_num_batched_tokens: int) -> int:
    """KV blocks one request of `length` tokens needs. A sliding-window group holds the window plus
    one chunk of prefill (vLLM's SlidingWindowSpec.max_memory_usage_bytes); a recurrent group one page
    (MambaSpec without prefix caching)."""
    blocks = layout.full_groups * math.ceil(length / block) + layout.recurrent_groups
    if layout.sliding_groups:
        held = min(length, (model.sliding_window or length) - 1 + max_num_batched_tokens)
        blocks += layout.sliding_groups * math.ceil(held / block)
    return blocks


def _largest_len_that_fits(model: ModelSpec, layout: KvLayout, blocks: int, block: int, mnbt: int) -> int:
    """The largest max-model-len one request of which fits, rounded down to a multiple of 1024."""
    lo, hi = 0, blocks * block
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if request_blocks(model, layout, mid, block, mnbt) <= blocks:
            lo = mid
        else:
            hi = mid - 1
    return (lo // 1024) * 1024 if lo >= 1024 else lo


# ---------------------------------------------------------------------------------------------
# Ollama / llama.cpp


def llamacpp_compute_buffer_bytes(model: ModelSpec, num_batch: int) -> float:
    """llama.cpp's compute graph buffer for one micro-batch: logits plus the widest activation."""
    widest = max(model.intermediate_size, model.moe_intermediate_size * max(1, model.experts_per_token))
    return num_batch * (model.vocab_size * 4 + (4 * model.hidden_size + 2 * widest) * 4)


def ollama_memory(dep: Deployment) -> MemoryPlan:
    from sparkserve.engines import ollama as engine

    hw, model = dep.hardware, dep.model
    devices = dep.devices
    num_ctx = _given(dep.num_ctx, _given(dep.max_model_len, engine.DEFAULT_NUM_CTX))
    parallel = _given(dep.num_parallel, engine.DEFAULT_NUM_PARALLEL)
    kv_dtype = dep.kv_cache_dtype if dep.kv_cache_dtype != "auto" else engine.DEFAULT_KV_CACHE_TYPE

    weights = weight_bytes(model, dep.quant, dep.engine, dep.extra_quantized)
    if model.cache_kinds:
        # llama.cpp keeps a windowed layer's last `window` tokens per sequence (its SWA cache), the rest in full
        per_token = kv_kinds.growth_bytes_per_token(model, kv_dtype, 1)
        kv = parallel * sum(k.layers * min(num_ctx, k.window or num_ctx) * kv_kinds.bytes_per_token(k, kv_dtype, 1)
                            for k in model.cache_kinds)
    else:
        per_token = kv_bytes_per_token_device(model, kv_dtype, 1)
        slots = tokens_per_request_layers(model, num_ctx, 0) * parallel
        # llama.cpp keeps recurrent (Mamba / DeltaNet) states in F32 (llama_memory_recurrent type_r / type_s)
        kv = slots * kv_bytes_per_layer_token(model, kv_dtype, 1) + parallel * model.recurrent_state_bytes(4.0, 4.0)
    compute = llamacpp_compute_buffer_bytes(model, engine.DEFAULT_NUM_BATCH)
    total = weights + kv + compute
    pool = (hw.gpu_memory_gib - (hw.os_reserve_gib if hw.unified else 0.0)) * GIB * devices
    plan = MemoryPlan(
        engine=dep.engine,
        devices=devices,
        device_memory_gib=hw.gpu_memory_gib,
        budget_gib=pool / GIB,
        weights_gib=weights / GIB,
        activation_gib=compute / GIB,
        non_torch_gib=0.0,
        cuda_graph_gib=0.0,
        kv_cache_gib=kv / GIB,
        kv_tokens=num_ctx * parallel,
        kv_bytes_per_token=per_token,
        max_model_len=num_ctx,
        max_concurrency=float(parallel),
        total_gib=total / GIB,
        settings=GgufSettings(num_ctx=num_ctx, num_parallel=parallel, kv_cache_type=kv_dtype),
    )
    if total > pool:
        plan.fits = False
        plan.reasons.append(
            f"weights, KV cache and compute buffers need {total / GIB:.1f} GiB but the GPU has {pool / GIB:.1f} GiB"
            f"{' beside the OS' if hw.unified else ''}; "
            "Ollama would offload layers to the CPU and run far slower"
        )
    if num_ctx > model.max_position_embeddings:
        plan.warnings.append(f"num_ctx {num_ctx:,} is above the model's {model.max_position_embeddings:,} positions")
    return plan


def engine_memory(dep: Deployment) -> MemoryPlan:
    """The deployment's engine decides which accounting applies (engines/: `Engine.memory`)."""
    from sparkserve.engines import get_engine

    return get_engine(dep.engine).memory(dep)

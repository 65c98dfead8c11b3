"""Turn a HF `config.json` into a ModelSpec: the planner never reads raw configs itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sparkserve.errors import UserError
from sparkserve.models import archs, deepseek_v4, gemma4
from sparkserve.models.spec import SINK_MODEL_TYPES, ModelSpec, ParamCounts

# Google's gemma-3 config.json files omit these keys and rely on the defaults of
# transformers' Gemma3TextConfig.__init__ (src/transformers/models/gemma3/configuration_gemma3.py).
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262_208,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 131_072,
    "sliding_window": 4096,
    "sliding_window_pattern": 6,
    "tie_word_embeddings": True,
}
# Keys gemma / gemma-2 config.json files omit, as transformers' GemmaConfig / Gemma2Config default them.
_GEMMA_DEFAULTS: dict[str, Any] = {"tie_word_embeddings": True, "head_dim": 256}
_GEMMA2_DEFAULTS: dict[str, Any] = {**_GEMMA_DEFAULTS, "sliding_window": 4096}
# Llama4TextConfig defaults: chunked local attention on three layers of four (the fourth is NoPE, global).
_LLAMA4_NO_ROPE_INTERVAL = 4
# OPT config.json files omit tie_word_embeddings (PretrainedConfig default: true) and name the MLP width ffn_dim.
_OPT_DEFAULTS: dict[str, Any] = {"tie_word_embeddings": True}
# Learned absolute positions: OPT's embed_positions table has max_position_embeddings + 2 rows (offset 2).
_OPT_POSITION_OFFSET = 2
_QWEN_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen3", "qwen3_moe"})
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text"})
_GEMMA3_TYPES = frozenset({"gemma3", "gemma3_text"})
# Gemma-2 and Gemma-3 norm both sides of attention and of the MLP (4 RMSNorms a layer).
_SANDWICH_NORM_TYPES = _GEMMA3_TYPES | {"gemma2"}
_LLAMA4_TYPES = frozenset({"llama4", "llama4_text"})
_SLIDING_TYPES = frozenset({"sliding_attention", "sliding", "local", "local_attention"})
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Groups a linear-layer weight quantiser (FP8, AWQ, GPTQ, ...) leaves in 16 bit.
_LINEAR_QUANT_KEEPS = ("embedding", "lm_head", "other", "vision")
_EVERY_GROUP = tuple(f.name for f in dataclasses.fields(ParamCounts))


def spec_from_config(config: Mapping[str, Any], model_id: str, source: str) -> ModelSpec:
    """Derive the planner's view of a model; raises UserError when the config is not a decoder LLM."""
    try:
        return _derive(config, model_id, source)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{source}: malformed config.json ({exc})") from exc


def _derive(config: Mapping[str, Any], model_id: str, source: str) -> ModelSpec:
    architecture = _first_architecture(config)
    text = _text_config(config)
    _check_required(text, source)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    archs.refuse_unmodelled(text, model_type, source)
    shape = _Shape.read(text, source)
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    intermediate = shape.intermediate
    if model_type in gemma4.TYPES:
        g = gemma4.Gemma4.read(text)
        params = g.params(shape.vocab, tied, _gemma4_towers(config, shape.hidden))
        moe = _Moe(g.experts, g.top_k, g.moe_width, 0, shape.layers if g.experts else 0)
        window: int | None = g.window
        sliding_layers = g.sliding_layers
        extra: dict[str, Any] = {"cache_kinds": g.cache_kinds()}
    else:
        moe = _Moe.read(text, shape, source)
        window, sliding_layers = _sliding_layers(text, model_type, shape.layers)
        params = _count(text, model_type, shape, moe, tied, _vision_params(config, shape.hidden))
        params, extra = _hybrid(text, model_type, shape, moe, params, source)
        if moe.layers >= shape.layers:
            intermediate = 0
    quant = _checkpoint_quant(config, text)
    spec = ModelSpec(
        id=model_id,
        architecture=architecture,
        model_type=str(config.get("model_type") or model_type),
        hidden_size=shape.hidden,
        num_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_kv_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        intermediate_size=intermediate,
        vocab_size=shape.vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=int(text.get("max_position_embeddings") or 0),
        params=params,
        num_experts=moe.experts,
        experts_per_token=moe.top_k,
        moe_intermediate_size=moe.width,
        num_shared_experts=moe.shared_experts,
        moe_layers=moe.layers,
        sliding_window=window,
        sliding_window_layers=sliding_layers,
        checkpoint_dtype=str(
            config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
            or "bfloat16"
        ),
        source=source,
        **extra,
    )
    return with_checkpoint_quant(spec, quant) if quant else spec


def _hybrid(
    text: Mapping[str, Any], model_type: str, shape: _Shape, moe: _Moe, params: ParamCounts, source: str
) -> tuple[ParamCounts, dict[str, Any]]:
    """Parameter groups and spec fields of latent-attention, linear-attention and Mamba-hybrid models."""
    h = shape.hidden
    full_layer_moe = moe.experts * _per_expert(model_type, h, moe) + _shared_and_router(model_type, h, moe)
    if model_type in deepseek_v4.TYPES:
        v4 = deepseek_v4.DeepseekV4.read(text, shape.layers, source)
        # the first num_hash_layers route by a token -> experts table (tid2eid: vocabulary x top-k)
        hash_tables = v4.hash_layers * shape.vocab * moe.top_k
        # MTP module: one windowed-attention block with its MoE and hyper-connections, e_proj and h_proj
        # (hidden -> hidden each), enorm, hnorm and a norm
        mtp = v4.mtp_layers * (v4.attention_params(0) + full_layer_moe + v4.hyper_params() + 2 * h * h + 3 * h)
        expert_dtype = str(text.get("expert_dtype") or "fp4")  # vLLM DeepseekV4FP8Config: missing means fp4
        fields = {"cache_kinds": v4.cache_kinds(), "mtp_layers": v4.mtp_layers,
                  "expert_format": "mxfp4" if expert_dtype == "fp4" else None}
        return dataclasses.replace(
            params, attention=sum(v4.attention_params(r) for r in v4.ratios),
            moe_shared=params.moe_shared + hash_tables,
            other=shape.layers * v4.hyper_params() + h + v4.head_hyper_params(), mtp=mtp), fields
    if model_type in archs.MLA_TYPES:
        mla = archs.Mla.read(text)
        attention = mla.attention_params(h, shape.heads)
        mtp_layers = int(text.get("num_nextn_predict_layers") or 0)
        extra: dict[str, Any] = {"kv_lora_rank": mla.kv_lora_rank, "qk_rope_head_dim": mla.rope,
                                 "index_head_dim": mla.index_head_dim, "index_topk": mla.index_topk,
                                 "mtp_layers": mtp_layers}
        # The MTP module (DeepSeek-V3 layer 61): one MoE decoder layer, enorm, hnorm, eh_proj (2h -> h) and a norm.
        mtp = mtp_layers * (attention + full_layer_moe + 2 * h + 2 * h * h + 3 * h)
        return dataclasses.replace(params, attention=shape.layers * attention, mtp=mtp), extra
    if model_type in archs.LINEAR_ATTENTION_TYPES:
        linear, full = archs.gated_deltanet(text, shape.layers, h)
        gated = archs.gated_attention_params(text, h, shape.heads, shape.kv_heads, shape.head_dim)
        mtp_layers = int(text.get("mtp_num_hidden_layers") or text.get("num_nextn_predict_layers") or 0)
        mlp = full_layer_moe if moe.experts else 3 * h * shape.intermediate
        # Qwen3NextMultiTokenPredictor: fc (2h -> h), two input norms, one full-attention decoder layer, a final norm.
        mtp = mtp_layers * (2 * h * h + 3 * h + gated + mlp + 2 * h)
        extra = {**_recurrent_fields(linear), "mtp_layers": mtp_layers}
        attention = full * gated + linear.layers * linear.params_per_layer
        return dataclasses.replace(params, attention=attention, mtp=mtp), extra
    if model_type in archs.MAMBA_HYBRID_TYPES:
        nh = archs.NemotronH.read(text, shape.layers, h, source)
        q_dim, kv_dim = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
        attn_layer = 2 * h * q_dim + 2 * h * kv_dim + h  # q, k, v, o (unbiased) and the block norm
        mlp_layer = 2 * h * shape.intermediate + h  # NemotronHMLP: up and down (squared ReLU, no gate), norm
        extra = {**_recurrent_fields(nh.mamba), "stateless_layers": nh.mlp_layers + nh.moe_layers,
                 "mtp_layers": int(text.get("num_nextn_predict_layers") or 0)}
        return dataclasses.replace(
            params,
            attention=nh.attention_layers * attn_layer + nh.mamba.layers * nh.mamba.params_per_layer,
            dense_mlp=nh.mlp_layers * mlp_layer,
            other=h + nh.moe_layers * h,  # the final norm and each MoE block's norm
        ), extra
    mtp_layers = int(text.get("num_nextn_predict_layers") or 0)
    if mtp_layers and moe.experts:
        # GLM-4.5+ MTP layer: one MoE decoder layer, enorm, hnorm, eh_proj (2h -> h) and a norm, as DeepSeek's
        layer = _attention_per_layer(text, model_type, shape) + full_layer_moe + 2 * h
        return dataclasses.replace(params, mtp=mtp_layers * (layer + 2 * h * h + 3 * h)), {"mtp_layers": mtp_layers}
    return params, {}


def _recurrent_fields(state: archs.Recurrent) -> dict[str, Any]:
    return {"recurrent_layers": state.layers, "recurrent_conv_elements": state.conv_elements,
            "recurrent_ssm_elements": state.ssm_elements, "recurrent_ssm_bytes": state.ssm_bytes}


def with_checkpoint_quant(spec: ModelSpec, quant: str) -> ModelSpec:
    """The same shape shipped pre-quantised; records which groups stay 16 bit so memory is priced per group."""
    if quant == "mxfp4":
        # gpt-oss: only the MoE expert weights are MXFP4; attention, router, embeddings and
        # lm_head are listed in quantization_config.modules_to_not_convert (bf16).
        keeps = tuple(g for g in _EVERY_GROUP if g not in ("experts", "experts_active"))
    else:
        keeps = _LINEAR_QUANT_KEEPS + (("moe_shared",) if spec.is_moe and not spec.num_shared_experts else ())
    return dataclasses.replace(spec, checkpoint_quant=quant, bf16_modules=keeps)


@dataclasses.dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def read(cls, text: Mapping[str, Any], source: str) -> _Shape:
        hidden = int(text["hidden_size"])
        heads = int(text["num_attention_heads"])
        intermediate = text.get("intermediate_size", text.get("ffn_dim"))  # OPT: ffn_dim
        if str(text.get("model_type")) in _LLAMA4_TYPES:
            # Llama 4: intermediate_size is the expert (and shared expert) width; dense layers use _mlp.
            intermediate = text.get("intermediate_size_mlp", intermediate)
        if intermediate is None and not _has_experts(text):
            raise UserError(f"{source}: config has no 'intermediate_size'; cannot size the MLP")
        return cls(
            hidden=hidden,
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=_head_dim(text, hidden, heads),
            intermediate=int(intermediate or 0),
            vocab=int(text["vocab_size"]),
        )


def _head_dim(text: Mapping[str, Any], hidden: int, heads: int) -> int:
    """Per-head width of the attention scores: MLA's query head is nope + rope wide."""
    if "kv_lora_rank" in text:
        return int(text["qk_nope_head_dim"]) + int(text["qk_rope_head_dim"])
    return int(text.get("head_dim") or text.get("attention_head_dim") or hidden // heads)


@dataclasses.dataclass(frozen=True)
class _Moe:
    experts: int = 0
    top_k: int = 0
    width: int = 0
    shared_width: int = 0
    layers: int = 0
    shared_gate: bool = False  # a sigmoid gate (hidden -> 1) scales the shared expert

    @property
    def shared_experts(self) -> int:
        return 1 if self.shared_width else 0

    @classmethod
    def read(cls, text: Mapping[str, Any], shape: _Shape, source: str = "") -> _Moe:
        model_type = str(text.get("model_type") or "")
        if model_type in archs.MAMBA_HYBRID_TYPES:
            if not text.get("n_routed_experts"):
                return cls()
            pattern = archs.nemotron_pattern(text)
            shared = int(text.get("moe_shared_expert_intermediate_size") or 0) * int(text.get("n_shared_experts") or 1)
            return cls(int(text["n_routed_experts"]), int(text["num_experts_per_tok"]),
                       int(text["moe_intermediate_size"]), shared, pattern.count("E"))
        if text.get("n_routed_experts"):  # DeepSeek-style MoE keys: DeepSeek, Kimi K2, GLM-4.5+ (glm4_moe)
            experts, top_k, width, shared, layers = archs.deepseek_moe(text, shape.layers)
            return cls(experts, top_k, width, shared, layers)
        experts = int(text.get("num_experts") or text.get("num_local_experts") or 0)
        if not experts:
            return cls()
        top_k = int(text.get("num_experts_per_tok") or text.get("experts_per_token") or 0)
        if model_type in _LLAMA4_TYPES:
            # Llama4TextConfig: experts and the one shared expert are intermediate_size wide; MoE layers are
            # moe_layers, else every interleave_moe_layer_step-th layer (Scout 1: all, Maverick 2: odd).
            width = int(text["intermediate_size"])
            step = int(text.get("interleave_moe_layer_step") or 1)
            listed = text.get("moe_layers")
            moe_at = set(listed) if listed else {i for i in range(shape.layers) if (i + 1) % step == 0}
            layers = sum(1 for i in range(shape.layers) if i in moe_at)
            return cls(experts, top_k, width, width, layers)
        width = int(text.get("moe_intermediate_size") or shape.intermediate)
        step = int(text.get("decoder_sparse_step") or 1)
        dense_only = set(text.get("mlp_only_layers") or ())
        layers = sum(1 for i in range(shape.layers) if i not in dense_only and (i + 1) % step == 0)
        shared_width = int(text.get("shared_expert_intermediate_size") or 0)
        # Qwen2-MoE-style shared experts (shared_expert_intermediate_size) come with a sigmoid gate.
        return cls(experts, top_k, width, shared_width, layers, shared_gate=bool(shared_width))


def _count(
    text: Mapping[str, Any], model_type: str, shape: _Shape, moe: _Moe, tied: bool, vision: int
) -> ParamCounts:
    h = shape.hidden
    embedding = shape.vocab * h
    dense_layers = shape.layers - moe.layers

    per_expert = _per_expert(model_type, h, moe)
    router_and_shared = _shared_and_router(model_type, h, moe)

    if model_type == "phi":
        # Phi-1/1.5/2: GELU MLP fc1 -> fc2, both biased; one LayerNorm (weight and bias) a layer, shared by
        # the parallel attention and MLP, and a final LayerNorm; the untied lm_head has a bias.
        dense_mlp = 2 * h * shape.intermediate + shape.intermediate + h
        norms_per_layer, final_norm = 2 * h, 2 * h
        lm_head = 0 if tied else embedding + shape.vocab
    elif model_type == "opt":
        # OPT: ReLU MLP fc1 -> fc2, biased; LayerNorms (weight and bias) before attention and MLP, a final
        # LayerNorm, and a learned position table (counted with the norms in `other`).
        dense_mlp = 2 * h * shape.intermediate + shape.intermediate + h
        positions = (int(text.get("max_position_embeddings") or 0) + _OPT_POSITION_OFFSET) * h
        norms_per_layer, final_norm = 2 * 2 * h, 2 * h + positions
        lm_head = 0 if tied else embedding
    else:
        mlp_bias = bool(text.get("mlp_bias", False))
        dense_mlp = 3 * h * shape.intermediate + ((2 * shape.intermediate + h) if mlp_bias else 0)
        # Gemma-2/3 norm both sides of attention and of the MLP; Llama-style layers norm only their inputs.
        norms_per_layer, final_norm = (4 if model_type in _SANDWICH_NORM_TYPES else 2) * h, h
        lm_head = 0 if tied else embedding

    return ParamCounts(
        embedding=embedding,
        lm_head=lm_head,
        attention=shape.layers * _attention_per_layer(text, model_type, shape),
        dense_mlp=dense_layers * dense_mlp,
        experts=moe.layers * moe.experts * per_expert,
        experts_active=moe.layers * moe.top_k * per_expert,
        moe_shared=moe.layers * router_and_shared,
        other=shape.layers * norms_per_layer + final_norm,
        vision=vision,
    )


def _per_expert(model_type: str, h: int, moe: _Moe) -> int:
    if model_type == "gpt_oss":
        # gate_up_proj (h -> 2*width, biased) and down_proj (width -> h, biased) per expert.
        return h * 2 * moe.width + 2 * moe.width + moe.width * h + h
    if model_type in archs.MAMBA_HYBRID_TYPES:
        return 2 * h * moe.width  # NemotronH experts: up and down, squared ReLU, no gate
    return 3 * h * moe.width


def _shared_and_router(model_type: str, h: int, moe: _Moe) -> int:
    """One MoE layer's router and shared experts."""
    if not moe.experts:
        return 0
    if model_type == "gpt_oss":
        return h * moe.experts + moe.experts
    if model_type in archs.MAMBA_HYBRID_TYPES:
        # router with e_score_correction_bias; the shared expert is an ungated up/down MLP
        return h * moe.experts + moe.experts + 2 * h * moe.shared_width
    if model_type in archs.MLA_TYPES or model_type in archs.DEEPSEEK_MOE_TYPES:
        # DeepseekV3MoE / Glm4MoeMoE: router weight and e_score_correction_bias; shared experts are SwiGLU MLPs
        return h * moe.experts + moe.experts + 3 * h * moe.shared_width
    shared = (3 * h * moe.shared_width + (h if moe.shared_gate else 0)) if moe.shared_width else 0
    return h * moe.experts + shared


def _attention_per_layer(text: Mapping[str, Any], model_type: str, shape: _Shape) -> int:
    h, q_dim, kv_dim = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    weights = h * q_dim + 2 * h * kv_dim + q_dim * h
    if model_type in ("qwen2", "qwen2_moe"):
        bias = q_dim + 2 * kv_dim  # Qwen2 hard-codes q/k/v biases and has no attention_bias key
    elif model_type in ("phi", "opt"):
        bias = q_dim + 2 * kv_dim + h  # Phi and OPT hard-code biases on q/k/v and the output projection
    elif text.get("attention_bias", False):
        bias = q_dim + 2 * kv_dim + h
    else:
        bias = 0
    qk_norm = 2 * shape.head_dim if model_type in _QK_NORM_TYPES else 0  # Llama 4's qk norm is a weightless L2
    if model_type == "phi" and text.get("qk_layernorm"):
        qk_norm = 2 * 2 * shape.head_dim  # LayerNorms (weight and bias) on q and k
    sinks = shape.heads if model_type in SINK_MODEL_TYPES else 0  # one learned attention-sink logit per head
    return weights + bias + qk_norm + sinks


def _sliding_layers(text: Mapping[str, Any], model_type: str, layers: int) -> tuple[int | None, int]:
    """Window size and how many layers use it; (None, 0) when every layer attends to the full context."""
    window = text.get("sliding_window")
    layer_types = text.get("layer_types")
    if model_type in deepseek_v4.TYPES:
        return None, 0  # its window is one of the caches every layer keeps (ModelSpec.cache_kinds)
    if layer_types:
        count = sum(1 for t in layer_types[:layers] if str(t) in _SLIDING_TYPES)
    elif model_type in _GEMMA3_TYPES:
        pattern = int(text.get("sliding_window_pattern") or 1)
        count = sum(1 for i in range(layers) if (i + 1) % pattern != 0)
    elif model_type == "gemma2":
        count = (layers + 1) // 2  # even-indexed layers are local (Gemma2Config layer_types default)
    elif model_type in _LLAMA4_TYPES:
        return _llama4_chunked_layers(text, layers)
    elif model_type == "phi3":
        # Phi-3-mini/medium-4k ship sliding_window 2047 under a 4096 context (later Phi-3.5/4 releases set it
        # past the context); the KV planner treats an every-layer window as one full-attention group anyway.
        count = 0
    elif window is None or not text.get("use_sliding_window", model_type not in _QWEN_TYPES):
        count = 0
    elif model_type in _QWEN_TYPES:
        count = max(0, layers - int(text.get("max_window_layers", layers)))  # layers >= max_window_layers slide
    else:
        count = layers  # Mistral-style: one window for every layer
    if not count or window is None:
        return None, 0
    return int(window), count


def _llama4_chunked_layers(text: Mapping[str, Any], layers: int) -> tuple[int | None, int]:
    """Llama 4 attends within attention_chunk_size-token chunks on its RoPE layers (no_rope_layers[i] == 1);
    like a sliding window, a request's KV on those layers never exceeds one chunk."""
    chunk = text.get("attention_chunk_size")
    if not chunk:
        return None, 0
    interval = int(text.get("no_rope_layer_interval") or _LLAMA4_NO_ROPE_INTERVAL)
    flags = text.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(layers)]
    count = sum(1 for flag in list(flags)[:layers] if flag)
    return (int(chunk), count) if count else (None, 0)


# Gemma4VisionConfig defaults (transformers configuration_gemma4.py), for configs that leave keys out.
_GEMMA4_VISION_DEFAULTS: dict[str, Any] = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 16,
                                           "num_attention_heads": 12, "num_key_value_heads": 12, "head_dim": 64}


def _gemma4_towers(config: Mapping[str, Any], text_hidden: int) -> int:
    """Gemma 4's vision tower (every size) and audio conformer (E2B, E4B) with their projectors."""
    towers = 0
    vision = config.get("vision_config")
    if isinstance(vision, Mapping):
        towers += gemma4.vision_params({**_GEMMA4_VISION_DEFAULTS, **vision}, text_hidden)
    audio = config.get("audio_config")
    if isinstance(audio, Mapping):
        towers += gemma4.audio_params(audio, text_hidden)
    return towers


def _vision_params(config: Mapping[str, Any], text_hidden: int) -> int:
    vision = config.get("vision_config")
    if not isinstance(vision, Mapping):
        return 0
    kind = str(vision.get("model_type", ""))
    vh = int(vision.get("hidden_size") or 0)
    if not vh:
        return 0
    if kind == "pixtral":
        return _pixtral_tower(vision) + _mistral3_projector(config, vh, text_hidden)
    if kind == "llama4_vision_model":
        return _llama4_vision(vision, text_hidden)
    if "out_hidden_size" in vision and "depth" in vision:  # Qwen3-VL / Qwen3.5 vision tower
        return archs.qwen3_vl_vision_params(vision)
    tower = _siglip_tower(vision)
    if str(config.get("model_type")) == "gemma3":
        return tower + vh * text_hidden + vh  # mm_input_projection_weight and mm_soft_emb_norm
    return tower + vh * text_hidden + text_hidden  # generic linear projector


def _siglip_tower(vision: Mapping[str, Any]) -> int:
    """SigLIP / ViT encoder: biased linears and LayerNorms (weight and bias)."""
    h = int(vision["hidden_size"])
    # Fallbacks are transformers SiglipVisionConfig defaults (intermediate 3072 = 4 x hidden 768).
    inter = int(vision.get("intermediate_size") or 4 * h)
    patch = int(vision.get("patch_size") or 16)
    channels = int(vision.get("num_channels") or 3)
    image = int(vision.get("image_size") or 224)
    patches = (image // patch) ** 2
    layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h
    depth = int(vision.get("num_hidden_layers") or vision.get("depth") or 0)
    tower = channels * patch * patch * h + h + patches * h + depth * layer + 2 * h
    if vision.get("vision_use_head"):  # attention-pooling head: probe, MHA in/out proj, LayerNorm, MLP
        tower += h + 3 * h * h + 3 * h + h * h + h + 2 * h + (h * inter + inter) + (inter * h + h)
    return tower


def _llama4_vision(vision: Mapping[str, Any], text_hidden: int) -> int:
    """Llama 4 ViT (biased attention and GELU MLP, LayerNorms, class and position embeddings), its
    pixel-shuffle adapter MLP and the linear projector to the text width; no biases outside the encoder."""
    h = int(vision["hidden_size"])
    inter = int(vision["intermediate_size"])
    patch = int(vision.get("patch_size") or 14)
    channels = int(vision.get("num_channels") or 3)
    patches = (int(vision.get("image_size") or 336) // patch) ** 2
    layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h
    # unfold-conv patch embedding, class embedding, positions (patches + class), pre and post LayerNorms
    embed = channels * patch * patch * h + h + (patches + 1) * h + 2 * 2 * h
    proj_in = int(vision.get("projector_input_dim") or 4096)
    proj_out = int(vision.get("projector_output_dim") or 4096)
    adapter = inter * proj_in + proj_out * proj_out  # Llama4VisionMLP2: fc1 (shuffled patches) and fc2
    projector = int(vision.get("vision_output_dim") or proj_out) * text_hidden
    return embed + int(vision.get("num_hidden_layers", 0)) * layer + adapter + projector


def _pixtral_tower(vision: Mapping[str, Any]) -> int:
    """Pixtral encoder: unbiased patch conv, RMSNorms, unbiased attention and SwiGLU MLP."""
    h = int(vision["hidden_size"])
    inter = int(vision["intermediate_size"])
    patch = int(vision.get("patch_size") or 16)  # transformers PixtralVisionConfig default
    channels = int(vision.get("num_channels") or 3)
    layer = 4 * h * h + 2 * h + 3 * h * inter
    return channels * patch * patch * h + h + int(vision.get("num_hidden_layers", 0)) * layer


def _mistral3_projector(config: Mapping[str, Any], vh: int, th: int) -> int:
    """RMSNorm, patch merger (merge**2 patches -> 1), then two linears vision -> text width."""
    merge = int(config.get("spatial_merge_size") or 2)  # transformers Mistral3Config default
    bias = bool(config.get("multimodal_projector_bias", False))  # transformers Mistral3Config default
    return vh + vh * merge * merge * vh + vh * th + th * th + ((2 * th) if bias else 0)


def _checkpoint_quant(config: Mapping[str, Any], text: Mapping[str, Any]) -> str | None:
    qc = config.get("quantization_config") or text.get("quantization_config")
    if not isinstance(qc, Mapping):
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method == "compressed-tensors":
        return _compressed_tensors_quant(qc)
    if method == "bitsandbytes":
        return "bnb-4bit" if qc.get("load_in_4bit") else "bnb-8bit"
    if method == "modelopt":
        # ModelOpt (hf_quant_config.json / quantization_config): quant_algo NVFP4, FP8, or per-layer MIXED_PRECISION
        algo = str(qc.get("quant_algo") or "").lower()
        # MIXED_PRECISION checkpoints (NVFP4 experts beside FP8 or BF16 layers) are priced from their headers;
        # their lowest format stands for the compute path
        known = {"nvfp4": "nvfp4", "fp8": "fp8", "w4a8_awq": "awq", "w4a16_awq": "awq", "mixed_precision": "nvfp4"}
        return known.get(algo, f"modelopt-{algo}")
    if method in ("autoround", "auto-round"):
        return "gptq"  # AutoRound exports the GPTQ int4 layout (bits 4, group_size 128) that vLLM loads as GPTQ
    return method or None


def _compressed_tensors_quant(qc: Mapping[str, Any]) -> str:
    for group in (qc.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        bits, kind = weights.get("num_bits"), weights.get("type")
        if bits == 8 and kind == "float":
            return "fp8"
        if bits in (4, 8) and kind == "int":
            return f"int{bits}"
        if bits == 4 and kind == "float":
            return "nvfp4"
    return "compressed-tensors"


def _first_architecture(config: Mapping[str, Any]) -> str:
    archs = config.get("architectures") or []
    return str(archs[0]) if archs else str(config.get("model_type") or "unknown")


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language model's keys: nested `text_config` for multimodal checkpoints, with family defaults filled in."""
    nested = config.get("text_config")
    text = dict(nested) if isinstance(nested, Mapping) else dict(config)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    if model_type in _GEMMA3_TYPES:
        text = {**_GEMMA3_TEXT_DEFAULTS, **text}
    elif model_type in gemma4.TYPES:
        text = {**gemma4.TEXT_DEFAULTS, **text}
    elif model_type == "gemma":
        text = {**_GEMMA_DEFAULTS, **text}
    elif model_type == "gemma2":
        text = {**_GEMMA2_DEFAULTS, **text}
    elif model_type == "opt":
        text = {**_OPT_DEFAULTS, **text}
    return text


def _has_experts(text: Mapping[str, Any]) -> bool:
    return bool(text.get("num_experts") or text.get("num_local_experts") or text.get("n_routed_experts"))


# Sizes that must be positive when a config gives them (0 is allowed for the counts of optional parts).
_POSITIVE = ("num_key_value_heads", "head_dim", "max_position_embeddings")
_NOT_NEGATIVE = ("intermediate_size", "moe_intermediate_size", "num_experts", "num_local_experts",
                 "n_routed_experts", "num_experts_per_tok", "sliding_window")


def _check_required(text: Mapping[str, Any], source: str) -> None:
    for key in _REQUIRED:
        if text.get(key) in (None, 0, ""):
            raise UserError(
                f"{source}: config has no {key!r}; sparkserve needs a decoder LLM config.json "
                f"(hidden_size, num_hidden_layers, num_attention_heads, vocab_size)"
            )
    for key, least in [(k, 1) for k in (*_REQUIRED, *_POSITIVE)] + [(k, 0) for k in _NOT_NEGATIVE]:
        value = text.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"{source}: config.json field {key!r} is {value!r}; expected a whole number >= {least}")

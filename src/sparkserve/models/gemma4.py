"""Gemma 4: local (sliding-window) and global layers with different KV shapes, layers that reuse an earlier
layer's KV, per-layer input embeddings, an MoE block beside the dense MLP, vision and audio towers.

Shapes follow vLLM's model (vllm/model_executor/models/gemma4.py: Gemma4DecoderLayer, Gemma4Attention,
Gemma4Model) and transformers' Gemma4TextConfig / Gemma4VisionConfig / Gemma4AudioConfig and their modules
(src/transformers/models/gemma4/configuration_gemma4.py, modeling_gemma4.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparkserve.models.spec import CacheKind, ParamCounts

TYPES = frozenset({"gemma4", "gemma4_text"})
# Gemma4TextConfig field defaults (configuration_gemma4.py); `global_head_dim` is popped with default 512 and
# `num_global_key_value_heads` with None. Published config.json files spell every key out.
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262_144,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 30,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "global_head_dim": 512,
    "max_position_embeddings": 131_072,
    "tie_word_embeddings": True,
    "sliding_window": 512,
    "vocab_size_per_layer_input": 262_144,
    "hidden_size_per_layer_input": 256,
    "attention_k_eq_v": False,
    "num_kv_shared_layers": 0,
    "enable_moe_block": False,
    "use_double_wide_mlp": False,
}
_PATTERN = 6  # Gemma4TextConfig.__post_init__: five sliding layers, then one full, and the last layer is full
# Gemma4VisionConfig defaults: patch 16 px, a 2 x 10,240 learned position table.
_VISION_PATCH = 16
_VISION_POSITIONS = 10 * 1024


def layer_types(text: Mapping[str, Any]) -> list[str]:
    layers = int(text["num_hidden_layers"])
    types = [str(t) for t in (text.get("layer_types") or [])][:layers]
    if len(types) < layers:
        types = ["sliding_attention" if (i + 1) % _PATTERN else "full_attention" for i in range(layers)]
    types[-1] = "full_attention"  # forced by Gemma4TextConfig.__post_init__
    return types


@dataclass(frozen=True)
class Gemma4:
    hidden: int
    heads: int
    kv_heads: int  # local layers
    head_dim: int  # local layers
    global_kv_heads: int
    global_head_dim: int
    k_eq_v: bool  # global layers cache K as V: no v_proj (the cache still holds both)
    window: int
    types: tuple[str, ...]
    shared: int  # the last `num_kv_shared_layers` layers reuse the KV of the last earlier layer of their type
    intermediate: int
    double_wide: bool  # shared-KV layers have a 2x wide MLP
    ple: int  # hidden_size_per_layer_input
    ple_vocab: int
    experts: int
    top_k: int
    moe_width: int
    bias: bool

    @classmethod
    def read(cls, text: Mapping[str, Any]) -> Gemma4:
        kv = int(text.get("num_key_value_heads") or text["num_attention_heads"])
        k_eq_v = bool(text.get("attention_k_eq_v"))
        # vLLM Gemma4DecoderLayer: global layers use num_global_key_value_heads only with attention_k_eq_v
        global_kv = int(text.get("num_global_key_value_heads") or kv) if k_eq_v else kv
        moe = bool(text.get("enable_moe_block") or text.get("use_second_mlp_block"))
        return cls(
            hidden=int(text["hidden_size"]),
            heads=int(text["num_attention_heads"]),
            kv_heads=kv,
            head_dim=int(text.get("head_dim") or 256),
            global_kv_heads=global_kv,
            global_head_dim=int(text.get("global_head_dim") or text.get("head_dim") or 512),
            k_eq_v=k_eq_v,
            window=int(text.get("sliding_window") or 512),
            types=tuple(layer_types(text)),
            shared=int(text.get("num_kv_shared_layers") or 0),
            intermediate=int(text.get("intermediate_size") or 0),
            double_wide=bool(text.get("use_double_wide_mlp")),
            ple=int(text.get("hidden_size_per_layer_input") or 0),
            ple_vocab=int(text.get("vocab_size_per_layer_input") or text["vocab_size"]),
            experts=int(text.get("num_experts") or 0) if moe else 0,
            top_k=int(text.get("top_k_experts") or 0) if moe else 0,
            moe_width=int(text.get("moe_intermediate_size") or text.get("expert_intermediate_size") or 0)
            if moe else 0,
            bias=bool(text.get("attention_bias")),
        )

    @property
    def layers(self) -> int:
        return len(self.types)

    @property
    def sliding_layers(self) -> int:
        return sum(1 for t in self.types if t != "full_attention")

    def cache_kinds(self) -> tuple[CacheKind, ...]:
        """vLLM allocates KV only for layers before the shared tail (kv_sharing_target_layer_name); shared layers
        read the cache of the last earlier layer of their type."""
        own = self.types[: self.layers - self.shared]
        local = sum(1 for t in own if t != "full_attention")
        kinds = [
            CacheKind("sliding", local, kv_heads=self.kv_heads, head_dim=self.head_dim, window=self.window,
                      query_width=self.heads * self.head_dim, attending_layers=self.sliding_layers),
            CacheKind("full", len(own) - local, kv_heads=self.global_kv_heads, head_dim=self.global_head_dim,
                      query_width=self.heads * self.global_head_dim,
                      attending_layers=self.layers - self.sliding_layers),
        ]
        return tuple(k for k in kinds if k.layers)

    def params(self, vocab: int, tied: bool, vision: int) -> ParamCounts:
        h = self.hidden
        attention = dense = other = experts = active = shared = 0
        first_shared = self.layers - self.shared
        for i, kind in enumerate(self.types):
            full = kind == "full_attention"
            hd = self.global_head_dim if full else self.head_dim
            kv = self.global_kv_heads if full else self.kv_heads
            values = 0 if full and self.k_eq_v else kv * hd  # k_eq_v: K's weights feed both K and V
            q, k = self.heads * hd, kv * hd
            attention += h * (q + k + values) + q * h + 2 * hd  # q/k/v/o projections, q_norm and k_norm
            if self.bias:
                attention += q + k + values + h
            width = self.intermediate * (2 if self.double_wide and i >= first_shared > 0 else 1)
            dense += 3 * h * width  # GELU-gated gate, up and down
            other += 4 * h + 1  # input, post-attention, pre- and post-feedforward norms; the layer scalar
            if self.ple:
                attention += 2 * h * self.ple  # per_layer_input_gate and per_layer_projection
                other += h  # post_per_layer_input_norm
            if self.experts:
                # Gemma4Router: scale (h) and proj (h -> experts); per_expert_scale; three more norms
                shared += h + h * self.experts + self.experts
                other += 3 * h
                experts += self.experts * 3 * h * self.moe_width
                active += self.top_k * 3 * h * self.moe_width
        embedding = vocab * h
        per_layer = 0
        if self.ple:
            per_layer = self.ple_vocab * self.layers * self.ple  # embed_tokens_per_layer, one table for all layers
            attention += h * self.layers * self.ple  # per_layer_model_projection
            other += self.ple  # per_layer_projection_norm
        return ParamCounts(
            embedding=embedding,
            lm_head=0 if tied else embedding,
            attention=attention,
            dense_mlp=dense,
            experts=experts,
            experts_active=active,
            moe_shared=shared,
            other=other + h,  # the final norm
            vision=vision,
            per_layer_embedding=per_layer,
        )


def vision_params(vision: Mapping[str, Any], text_hidden: int) -> int:
    """Gemma4VisionModel and its embed_vision projector: patch projection (3 x patch^2 -> h, unbiased) and a
    2 x position_embedding_size x h position table; per layer q/k/v/o (unbiased), q_norm and k_norm, a gated
    MLP and four RMSNorms; the standardize bias and scale; embedding_projection (h -> text width, unbiased).
    Clip bounds of clipped linears (4 scalars each) are left out."""
    h = int(vision["hidden_size"])
    inter = int(vision["intermediate_size"])
    heads = int(vision.get("num_attention_heads") or 12)
    kv = int(vision.get("num_key_value_heads") or heads)
    hd = int(vision.get("head_dim") or h // heads)
    patch = int(vision.get("patch_size") or _VISION_PATCH)
    positions = int(vision.get("position_embedding_size") or _VISION_POSITIONS)
    layer = h * (heads + 2 * kv) * hd + heads * hd * h + 2 * hd + 3 * h * inter + 4 * h
    embed = 3 * patch * patch * h + 2 * positions * h
    standardize = 2 * h if vision.get("standardize") else 0
    return embed + int(vision["num_hidden_layers"]) * layer + standardize + h * text_hidden


def audio_params(audio: Mapping[str, Any], text_hidden: int) -> int:
    """Gemma4AudioModel (a conformer) and its embed_audio projector. Per layer: two feed-forward blocks
    (h -> 4h -> h with pre and post norms), attention (q, k, v, post, relative_k_proj, per_dim_scale), the light
    conv (linear_start h -> 2h, depthwise conv, linear_end, two norms) and three norms. Before: two 3x3 conv
    subsampling layers with LayerNorms and input_proj_linear; after: output_proj (h -> output_proj_dims) and
    embedding_projection to the text width. Clip bounds (4 scalars per clipped linear) are left out."""
    h = int(audio.get("hidden_size") or 1024)
    heads = int(audio.get("num_attention_heads") or 8)
    kernel = int(audio.get("conv_kernel_size") or 5)
    c0, c1 = (int(c) for c in (audio.get("subsampling_conv_channels") or (128, 32))[:2])
    out = int(audio.get("output_proj_dims") or 1536)
    feed_forward = 2 * (2 * h * 4 * h + 2 * h)
    attention = 5 * h * h + h // heads
    light_conv = 2 * h * h + h * h + kernel * h + 2 * h
    layer = feed_forward + attention + light_conv + 3 * h
    subsample = 9 * c0 + c0 + 9 * c0 * c1 + c1 + (c0 // 4) * c1 * h
    return subsample + int(audio.get("num_hidden_layers") or 12) * layer + h * out + out * text_hidden

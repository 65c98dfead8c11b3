"""Shapes of the 2026 architectures the plain decoder formula misses: latent attention, linear attention and
Mamba hybrids, their parameter counts and the per-sequence state vLLM allocates for them.

Parameter formulas follow the module definitions in transformers / vLLM (named per function); cache sizes
follow vLLM's KV-cache specs (MLAAttentionSpec, MambaSpec).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparkserve.errors import UserError

MLA_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2", "glm_moe_dsa", "glm4_moe_lite"})
LINEAR_ATTENTION_TYPES = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"})
MAMBA_HYBRID_TYPES = frozenset({"nemotron_h"})
# GQA attention with DeepSeek-style MoE keys (n_routed_experts, first_k_dense_replace, noaux_tc router bias)
DEEPSEEK_MOE_TYPES = frozenset({"glm4_moe", "deepseek_v2", "deepseek_v3", "kimi_k2", "deepseek_v4"})
# Architectures whose cache the planner cannot size yet: refused by name rather than planned as dense attention.
_REFUSED = {
    "deepseek_v41": "DeepSeek-V4.1's Engram memory and candidate-block attention",
    "deepseek_v41_text": "DeepSeek-V4.1's Engram memory and candidate-block attention",
    "falcon_h1": "Falcon-H1's parallel attention + Mamba in every block",
    "jamba": "Jamba's Mamba-1 state layout",
    "mamba": "pure Mamba-1 models",
    "mamba2": "pure Mamba-2 models without attention layers",
    "minimax_m1": "MiniMax lightning attention",
    "kimi_linear": "Kimi Linear's KDA layers",
}
_FLOAT32 = frozenset({"float32", "fp32"})
# Config keys of features that change weights or the cache in ways the planner does not count yet.
_REFUSED_KEYS = {
    "moe_latent_size": "latent MoE, experts working in a projected width (Nemotron 3 Super)",
    "num_kv_shared_layers": "layers that reuse another layer's KV cache (Gemma 3n)",
    "hidden_size_per_layer_input": "per-layer input embeddings (Gemma 3n)",
}
# Gemma 4 (models/gemma4.py) models these keys; Gemma 3n shares them but adds AltUp and LAuReL blocks.
_MODELLED_KEYS = {"gemma4": frozenset({"num_kv_shared_layers", "hidden_size_per_layer_input"}),
                  "gemma4_text": frozenset({"num_kv_shared_layers", "hidden_size_per_layer_input"})}


def refuse_unmodelled(text: Mapping[str, Any], model_type: str, source: str) -> None:
    """One line naming the feature the planner would get wrong, instead of a wrong plan."""
    if model_type in _REFUSED:
        raise UserError(f"{source}: {_REFUSED[model_type]} is not modelled by the planner yet ({model_type})")
    if "kv_lora_rank" in text and model_type not in MLA_TYPES:
        raise UserError(f"{source}: multi-head latent attention in model_type {model_type!r} is not modelled yet "
                        f"(known: {', '.join(sorted(MLA_TYPES))})")
    for key, feature in _REFUSED_KEYS.items():
        if text.get(key) and key not in _MODELLED_KEYS.get(model_type, ()):
            raise UserError(f"{source}: {feature} ({key}) is not modelled by the planner yet")
    if ("layer_types" in text and any(str(t) not in _KNOWN_LAYER_TYPES for t in text["layer_types"])):
        unknown = sorted({str(t) for t in text["layer_types"]} - _KNOWN_LAYER_TYPES)
        raise UserError(f"{source}: layer type(s) {', '.join(unknown)} are not modelled by the planner yet")


_KNOWN_LAYER_TYPES = frozenset({
    "full_attention", "attention", "sliding_attention", "sliding", "local", "local_attention", "linear_attention",
    "chunked_attention",
})


# ---------------------------------------------------------------------------------------------
# Multi-head latent attention


@dataclass(frozen=True)
class Mla:
    kv_lora_rank: int
    q_lora_rank: int
    nope: int  # qk_nope_head_dim
    rope: int  # qk_rope_head_dim
    v_head_dim: int
    index_head_dim: int = 0
    index_heads: int = 0
    index_topk: int = 0

    @classmethod
    def read(cls, text: Mapping[str, Any]) -> Mla:
        sparse = "index_topk" in text
        return cls(
            kv_lora_rank=int(text["kv_lora_rank"]),
            q_lora_rank=int(text.get("q_lora_rank") or 0),
            nope=int(text["qk_nope_head_dim"]),
            rope=int(text["qk_rope_head_dim"]),
            v_head_dim=int(text["v_head_dim"]),
            index_head_dim=int(text.get("index_head_dim") or 0) if sparse else 0,
            index_heads=int(text.get("index_n_heads") or 0) if sparse else 0,
            index_topk=int(text.get("index_topk") or 0),
        )

    def attention_params(self, hidden: int, heads: int) -> int:
        """DeepseekV2Attention: q_a (+ q_a_layernorm) and q_b, or one q_proj; kv_a_proj_with_mqa, kv_a_layernorm,
        kv_b_proj, o_proj; none biased. V3.2's indexer adds wq_b, wk, k_norm (LayerNorm) and weights_proj."""
        q_head = self.nope + self.rope
        if self.q_lora_rank:
            q = hidden * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * heads * q_head
        else:
            q = hidden * heads * q_head
        kv = hidden * (self.kv_lora_rank + self.rope) + self.kv_lora_rank
        kv += self.kv_lora_rank * heads * (self.nope + self.v_head_dim)
        out = heads * self.v_head_dim * hidden
        indexer = 0
        if self.index_head_dim:
            d, n = self.index_head_dim, self.index_heads
            indexer = self.q_lora_rank * n * d + hidden * d + 2 * d + hidden * n
        return q + kv + out + indexer


def deepseek_moe(text: Mapping[str, Any], layers: int) -> tuple[int, int, int, int, int]:
    """(experts, top_k, expert width, shared width, MoE layers) of DeepseekV3Config: layers from
    first_k_dense_replace on, every moe_layer_freq-th, are MoE; n_shared_experts always-on experts."""
    experts = int(text.get("n_routed_experts") or 0)
    if not experts:
        return 0, 0, 0, 0, 0
    width = int(text["moe_intermediate_size"])
    first_dense = int(text.get("first_k_dense_replace") or 0)
    freq = int(text.get("moe_layer_freq") or 1)
    moe_layers = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
    shared = int(text.get("n_shared_experts") or 0) * width
    return experts, int(text.get("num_experts_per_tok") or 0), width, shared, moe_layers


# ---------------------------------------------------------------------------------------------
# Hybrid linear attention (Qwen3-Next, Qwen3.5 / 3.6) and Mamba hybrids (Nemotron-H, Nemotron 3)


@dataclass(frozen=True)
class Recurrent:
    """Layers with a fixed per-sequence state, and what one such layer weighs and holds."""

    layers: int = 0
    conv_elements: int = 0
    ssm_elements: int = 0
    ssm_bytes: int = 2
    params_per_layer: int = 0


def gated_deltanet(text: Mapping[str, Any], layers: int, hidden: int) -> tuple[Recurrent, int]:
    """Qwen3-Next gated DeltaNet layers and how many layers stay full attention.

    Layers: `layer_types` when given, else every full_attention_interval-th layer is full attention.
    State (vLLM MambaStateShapeCalculator.gated_delta_net_state_shape): conv (conv_dim, kernel - 1) with
    conv_dim = 2 * key_dim + value_dim, temporal (v_heads, k_head_dim, v_head_dim).
    Weights (Qwen3NextGatedDeltaNet): in_proj_qkvz, in_proj_ba, conv1d (no bias), dt_bias, A_log,
    a gated RMSNorm of v_head_dim, out_proj."""
    types = text.get("layer_types")
    if types:
        linear = sum(1 for t in list(types)[:layers] if str(t) == "linear_attention")
    else:
        interval = int(text.get("full_attention_interval") or 4)  # Qwen3NextConfig default
        linear = sum(1 for i in range(layers) if (i + 1) % interval != 0)
    k_heads, v_heads = int(text["linear_num_key_heads"]), int(text["linear_num_value_heads"])
    k_dim, v_dim = int(text["linear_key_head_dim"]), int(text["linear_value_head_dim"])
    kernel = int(text.get("linear_conv_kernel_dim") or 4)
    key_dim, value_dim = k_heads * k_dim, v_heads * v_dim
    conv_dim = 2 * key_dim + value_dim
    params = (hidden * (2 * key_dim + 2 * value_dim) + hidden * 2 * v_heads + conv_dim * kernel
              + 2 * v_heads + v_dim + value_dim * hidden)
    ssm_dtype = str(text.get("mamba_ssm_dtype") or text.get("mamba_ssm_cache_dtype") or "")
    return Recurrent(
        layers=linear,
        conv_elements=conv_dim * (kernel - 1),
        ssm_elements=v_heads * k_dim * v_dim,
        ssm_bytes=4 if ssm_dtype in _FLOAT32 else 2,
        params_per_layer=params,
    ), layers - linear


def gated_attention_params(text: Mapping[str, Any], hidden: int, heads: int, kv_heads: int, head_dim: int) -> int:
    """Qwen3-Next full attention: q_proj doubles its output for the sigmoid output gate (attn_output_gate)."""
    gate = 2 if text.get("attn_output_gate", True) else 1
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    return hidden * q_dim * gate + 2 * hidden * kv_dim + q_dim * hidden + 2 * head_dim


@dataclass(frozen=True)
class NemotronH:
    """Nemotron-H / Nemotron 3: `hybrid_override_pattern` gives each layer one block: M Mamba-2, * attention,
    - MLP, E MoE (NemotronHConfig)."""

    pattern: str
    mamba: Recurrent
    attention_layers: int
    mlp_layers: int
    moe_layers: int

    @classmethod
    def read(cls, text: Mapping[str, Any], layers: int, hidden: int, source: str) -> NemotronH:
        pattern = nemotron_pattern(text)
        if len(pattern) != layers or set(pattern) - set("M*-E"):
            raise UserError(f"{source}: hybrid_override_pattern must have one of M * - E per layer "
                            f"({layers} layers), got {pattern!r}")
        heads = int(text["mamba_num_heads"])
        head_dim = int(text["mamba_head_dim"])
        groups = int(text.get("n_groups") or text.get("mamba_n_groups") or 1)
        state = int(text["ssm_state_size"])
        kernel = int(text.get("conv_kernel") or 4)
        inner = heads * head_dim
        conv_dim = inner + 2 * groups * state
        # NemotronHMamba2Mixer: in_proj (z, x, B, C, dt), biased conv1d, dt_bias, A_log, D, gated norm, out_proj;
        # plus the block's RMSNorm.
        params = (hidden * (2 * inner + 2 * groups * state + heads) + conv_dim * kernel
                  + (conv_dim if text.get("use_conv_bias", True) else 0) + 3 * heads + inner + inner * hidden + hidden)
        ssm_dtype = str(text.get("mamba_ssm_cache_dtype") or "")
        mamba = Recurrent(pattern.count("M"), conv_dim * (kernel - 1), heads * head_dim * state,
                          4 if ssm_dtype in _FLOAT32 else 2, params)
        return cls(pattern, mamba, pattern.count("*"), pattern.count("-"), pattern.count("E"))


def nemotron_pattern(text: Mapping[str, Any]) -> str:
    """One letter per layer: hybrid_override_pattern, or newer Nemotron 3 configs' layers_block_type names."""
    pattern = str(text.get("hybrid_override_pattern") or "")
    if not pattern and text.get("layers_block_type"):
        letters = {"mamba": "M", "attention": "*", "mlp": "-", "moe": "E"}
        pattern = "".join(letters.get(str(b), "?") for b in text["layers_block_type"])
    return pattern


def qwen3_vl_vision_params(vision: Mapping[str, Any]) -> int:
    """Qwen3-VL / Qwen3.5 vision tower: Conv3d patch embedding (biased), learned positions, ViT blocks with
    LayerNorms and biased linears, the patch merger and one DeepStack merger per deepstack_visual_indexes."""
    h = int(vision["hidden_size"])
    inter = int(vision["intermediate_size"])
    patch = int(vision.get("patch_size") or 16)
    temporal = int(vision.get("temporal_patch_size") or 2)
    channels = int(vision.get("in_channels") or 3)
    merge = int(vision.get("spatial_merge_size") or 2)
    out = int(vision["out_hidden_size"])
    embed = channels * temporal * patch * patch * h + h + int(vision.get("num_position_embeddings") or 0) * h
    block = 2 * 2 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inter + inter) + (inter * h + h)
    merged = h * merge * merge
    merger = 2 * h + (merged * merged + merged) + (merged * out + out)
    deepstack = len(vision.get("deepstack_visual_indexes") or ()) * (2 * merged + (merged * merged + merged)
                                                                      + (merged * out + out))
    return embed + int(vision["depth"]) * block + merger + deepstack

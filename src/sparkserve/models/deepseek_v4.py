"""DeepSeek-V4: one 512-wide latent per token, kept three ways, with hyper-connections around every block.

Every layer keeps its last `sliding_window` latents; a layer with compress ratio 4 also keeps one compressed latent
per 4 tokens, of which a lightning indexer (its own 128-wide keys per 4 tokens) picks index_topk for each query;
a layer with ratio 128 keeps one per 128 tokens and attends to all of them. Compressors hold partial blocks as
fp32 states. Cache layouts are vLLM's (vllm/model_executor/layers/deepseek_v4_attention.py,
vllm/v1/attention/backends/mla/sparse_swa.py, vllm/v1/kv_cache_interface.py MLAAttentionSpec with
model_version "deepseek_v4", the compressor's CompressorStateCache); module shapes follow vLLM's
DeepseekV4 model and DeepSeek's reference inference code (wq_a/wq_b, wkv, grouped wo_a/wo_b, attn_sink,
Compressor, Indexer, hc_*_fn/base/scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparkserve.errors import UserError
from sparkserve.models.spec import CacheKind

TYPES = frozenset({"deepseek_v4"})
# vLLM's FlashMLA fp8_ds_mla layout for V4: 448 FP8 NoPE bytes + 64 BF16 RoPE values (128 bytes) + 8 bytes of
# UE8M0 scales = 584 bytes a latent (MLAAttentionSpec / DeepseekSparseSWABackend.get_kv_cache_shape); pages are
# padded to a multiple of 576 bytes (alignment=576, "FlashMLA requires 576B alignment").
LATENT_SLOT_BYTES = 584
PAGE_ALIGN = 576
SWA_PAGE_TOKENS = 64  # DeepseekV4SWACache.block_size: shares a tensor with the 256 // 4 slots of a C4 page
BLOCK_TOKENS = 256  # DeepseekSparseSWABackend.get_preferred_block_size: the block vLLM picks for V4
FP32 = 4  # compressor states are fp32 (CompressorStateCache asserts it)
_INDEX_SCALE_GROUP = 128  # indexer keys: FP8 values and one fp32 scale per 128 (128 + 4 = 132 bytes)
_RATIOS = frozenset({4, 128})  # vLLM's DeepseekV4 layer types: SWA-only (ratio <= 1), C4A, C128A
_HC_SCALES = 3  # hc_attn_scale / hc_ffn_scale have 3 entries


@dataclass(frozen=True)
class DeepseekV4:
    hidden: int
    heads: int
    head_dim: int
    rope: int
    q_lora: int
    o_lora: int
    o_groups: int
    window: int
    ratios: tuple[int, ...]  # one per decoder layer (MTP entries dropped); <= 1: windowed only
    index_heads: int
    index_head_dim: int
    index_topk: int
    hc: int  # hc_mult: parallel residual streams
    hash_layers: int
    mtp_layers: int

    @classmethod
    def read(cls, text: Mapping[str, Any], layers: int, source: str) -> DeepseekV4:
        ratios = tuple(int(r) for r in (text.get("compress_ratios") or [0] * layers)[:layers])
        if len(ratios) < layers:
            raise UserError(f"{source}: compress_ratios has {len(ratios)} entries for {layers} layers; "
                            "DeepSeek-V4 needs one per layer")
        odd = sorted({r for r in ratios if r > 1 and r not in _RATIOS})
        if odd:
            raise UserError(f"{source}: compress ratio(s) {', '.join(map(str, odd))} are not modelled by the planner "
                            "yet (vLLM's DeepSeek-V4 layers compress by 4 or 128)")
        # A key a derived config leaves out takes deepseek-ai/DeepSeek-V4-Flash's config.json value
        # (bundled/deepseek-ai--DeepSeek-V4-Flash.json, its `_source` says where it was read): head_dim 512,
        # rope 64, q/o LoRA ranks 1024, 8 output groups, a 128-token window, an indexer of 64 heads x 128
        # picking the top 512. The last three mean a feature is off when absent: one hyper-connection copy
        # (Flash has 4), no hash-routed layers (Flash 3), no MTP layer (Flash 1).
        return cls(
            hidden=int(text["hidden_size"]),
            heads=int(text["num_attention_heads"]),
            head_dim=int(text.get("head_dim") or 512),
            rope=int(text.get("qk_rope_head_dim") or 64),
            q_lora=int(text.get("q_lora_rank") or 1024),
            o_lora=int(text.get("o_lora_rank") or 1024),
            o_groups=int(text.get("o_groups") or 8),
            window=int(text.get("sliding_window") or 128),
            ratios=ratios,
            index_heads=int(text.get("index_n_heads") or 64),
            index_head_dim=int(text.get("index_head_dim") or 128),
            index_topk=int(text.get("index_topk") or 512),
            hc=int(text.get("hc_mult") or 1),
            hash_layers=int(text.get("num_hash_layers") or 0),
            mtp_layers=int(text.get("num_nextn_predict_layers") or 0),
        )

    @property
    def c4_layers(self) -> int:
        return sum(1 for r in self.ratios if r == 4)

    @property
    def c128_layers(self) -> int:
        return sum(1 for r in self.ratios if r == 128)

    def cache_kinds(self) -> tuple[CacheKind, ...]:
        """Per layer, as vLLM declares it: the windowed latents (SlidingWindowMLASpec, 64-token pages); the
        compressed latents and the indexer keys (MLAAttentionSpec with compress_ratio, 256-token blocks); the
        compressors' fp32 states (state_dim = 2 x coff x head_dim, coff 2 for ratio 4 and 1 for ratio 128,
        windows of coff x ratio tokens, pages of 4 and 8 tokens). States are read once a block completes."""
        q, n = self.heads * self.head_dim, len(self.ratios)
        c4, c128, idx = self.c4_layers, self.c128_layers, self.index_head_dim
        latent, state = LATENT_SLOT_BYTES, 2 * self.head_dim * FP32
        kinds = (
            CacheKind("window", n, slot_bytes=latent, window=self.window, page_tokens=SWA_PAGE_TOKENS,
                      query_width=q, attending_layers=n),
            CacheKind("c4", c4, slot_bytes=latent, tokens_per_slot=4, page_tokens=BLOCK_TOKENS,
                      read_slots=self.index_topk, query_width=q, attending_layers=c4),
            CacheKind("c4-index", c4, slot_bytes=idx + idx // _INDEX_SCALE_GROUP * FP32, tokens_per_slot=4,
                      page_tokens=BLOCK_TOKENS, query_width=self.index_heads * idx, attending_layers=c4),
            CacheKind("c128", c128, slot_bytes=latent, tokens_per_slot=128, page_tokens=BLOCK_TOKENS,
                      query_width=q, attending_layers=c128),
            CacheKind("c4-state", c4, slot_bytes=2 * state, window=2 * 4, page_tokens=4, read_slots=0),
            CacheKind("c4-index-state", c4, slot_bytes=2 * 2 * idx * FP32, window=2 * 4, page_tokens=4,
                      read_slots=0),
            CacheKind("c128-state", c128, slot_bytes=state, window=128, page_tokens=8, read_slots=0),
        )
        return tuple(dataclasses.replace(k, page_align=PAGE_ALIGN) for k in kinds if k.layers)

    def _compressor(self, ratio: int, head_dim: int) -> int:
        """wkv and wgate (hidden -> coff x head_dim), the ape table (ratio x coff x head_dim) and a norm."""
        width = (2 if ratio == 4 else 1) * head_dim
        return 2 * self.hidden * width + ratio * width + head_dim

    def attention_params(self, ratio: int) -> int:
        """wq_a, q_norm, wq_b; wkv (one 512-wide latent), kv_norm; grouped wo_a (heads x head_dim -> o_groups x
        o_lora_rank) and wo_b; attn_sink; a compressor when ratio > 1 and, at ratio 4, the indexer's wq_b,
        weights_proj and its own compressor of index_head_dim."""
        h, q = self.hidden, self.heads * self.head_dim
        params = h * self.q_lora + self.q_lora + self.q_lora * q + h * self.head_dim + self.head_dim
        params += q * self.o_lora + self.o_groups * self.o_lora * h + self.heads
        if ratio > 1:
            params += self._compressor(ratio, self.head_dim)
        if ratio == 4:
            params += self.q_lora * self.index_heads * self.index_head_dim + h * self.index_heads
            params += self._compressor(4, self.index_head_dim)
        return params

    def hyper_params(self) -> int:
        """hc_attn and hc_ffn: fn ((2 + hc) x hc by hc x hidden), base and 3 scales each; two block norms."""
        mix = (2 + self.hc) * self.hc
        return 2 * (mix * self.hc * self.hidden + mix + _HC_SCALES) + 2 * self.hidden

    def head_hyper_params(self) -> int:
        """hc_head_fn (hc x hc x hidden), hc_head_base (hc) and hc_head_scale (1) before the final norm."""
        return self.hc * self.hc * self.hidden + self.hc + 1

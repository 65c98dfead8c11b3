"""A model's shape, as the planner needs it: derived from a HF `config.json`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by group; the planner prices each group at its own precision."""

    embedding: int  # input token embeddings
    lm_head: int  # output projection; 0 when tied to the embeddings
    attention: int  # q/k/v/o projections and biases, per-head q/k norms, attention sinks; all layers
    dense_mlp: int  # MLPs of non-MoE layers
    experts: int  # routed experts, all of them, all MoE layers
    experts_active: int  # routed experts one token touches (top-k of each MoE layer)
    moe_shared: int  # shared experts and routers: every token reads them
    other: int  # layer norms and the final norm
    vision: int = 0  # vision / audio towers and projectors of a multimodal checkpoint
    mtp: int = 0  # multi-token-prediction heads: in the checkpoint, loaded only for MTP speculative decoding
    # Gemma 4's per-layer input embeddings: a vocabulary x layers x width table of which a token looks up one row
    per_layer_embedding: int = 0

    @property
    def total(self) -> int:
        return (
            self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts
            + self.moe_shared + self.other + self.vision + self.per_layer_embedding
        )

    @property
    def checkpoint_total(self) -> int:
        """What the repository ships: the model plus its MTP heads (DeepSeek-V3: 671B + 14B = 685B)."""
        return self.total + self.mtp

    @property
    def active(self) -> int:
        """Parameters one token uses, embeddings included (Qwen's cards count so; OpenAI's
        gpt-oss card leaves the input embedding out: `active - embedding`). Per-layer embedding tables are
        left out like the towers: a token reads one row of them (Google's "effective" E2B / E4B sizes)."""
        return self.total - self.experts + self.experts_active - self.vision - self.per_layer_embedding


@dataclass(frozen=True)
class CacheKind:
    """One kind of per-token cache that a set of layers keeps, as vLLM declares it per layer (a KVCacheSpec).

    Models whose layers differ in what they cache carry one entry per kind: Gemma 4's local layers (K and V of
    num_key_value_heads x head_dim, bounded by the window) beside its global ones (num_global_key_value_heads x
    global_head_dim); DeepSeek-V4's windowed latents, compressed latents, indexer keys and compressor states."""

    name: str
    layers: int  # layers that keep this cache
    kv_heads: int = 0  # K and V heads of head_dim each, in the KV dtype, split over tensor-parallel ranks
    head_dim: int = 0
    slot_bytes: int = 0  # else: bytes of one stored slot whatever --kv-cache-dtype, replicated on every rank
    tokens_per_slot: int = 1  # DeepSeek-V4 compression: one slot holds 4 or 128 tokens
    window: int | None = None  # tokens kept per sequence; None: the whole context
    page_tokens: int = 0  # tokens per page when the model fixes them (DeepSeek-V4); 0: the engine's block size
    page_align: int = 0  # pages rounded up to a multiple of this many bytes (FlashMLA's fp8_ds_mla: 576)
    read_slots: int | None = None  # slots one decode step reads at most (sparse attention's top-k); None: all held
    query_width: int = 0  # heads x head_dim of the queries that attend this cache (attention FLOPs)
    attending_layers: int = 0  # layers whose queries read it (Gemma 4: shared-KV layers read an earlier layer's)


# Model types whose attention learns a sink logit per head (gpt-oss: its config.json has no field for it).
SINK_MODEL_TYPES = ("gpt_oss",)


@dataclass(frozen=True)
class ModelSpec:
    id: str  # HF id, e.g. "Qwen/Qwen3-32B"
    architecture: str  # config "architectures"[0]
    model_type: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (0 when every layer is MoE)
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    params: ParamCounts
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    moe_layers: int = 0  # layers whose MLP is MoE
    sliding_window: int | None = None
    sliding_window_layers: int = 0  # layers with local attention (KV capped at the window)
    checkpoint_dtype: str = "bfloat16"
    checkpoint_quant: str | None = None  # quantisation the published checkpoint ships in ("mxfp4")
    bf16_modules: tuple[str, ...] = ()  # groups of ParamCounts the checkpoint keeps in 16 bit
    source: str = ""  # where the config came from: "bundled", a path
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi K2, GLM-5): each attention layer caches one latent
    # vector of kv_lora_rank + qk_rope_head_dim per token, shared by all heads (vLLM's MLA backends).
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    # DeepSeek sparse attention (V3.2): a lightning indexer caches an index_head_dim FP8 key (and one fp32 scale
    # per 128) per token per layer; each query attends to at most index_topk tokens.
    index_head_dim: int = 0
    index_topk: int = 0
    # Linear-attention (gated DeltaNet) and Mamba layers: no KV cache, a fixed state per sequence per layer.
    recurrent_layers: int = 0
    recurrent_conv_elements: int = 0  # convolution state of one layer, one sequence
    recurrent_ssm_elements: int = 0  # recurrent (temporal / SSM) state of one layer, one sequence
    recurrent_ssm_bytes: int = 2  # the SSM state's dtype: model dtype unless the config asks for float32
    stateless_layers: int = 0  # Nemotron-H MLP / MoE blocks counted in num_layers: neither KV nor state
    mtp_layers: int = 0  # multi-token-prediction layers shipped beside the model
    # Layers that differ in what they cache (Gemma 4, DeepSeek-V4): the caches by kind, replacing the uniform
    # per-layer formula of kv_elements_per_layer_token for memory and decode traffic.
    cache_kinds: tuple[CacheKind, ...] = ()
    expert_format: str | None = None  # routed experts' own format in a checkpoint quantised otherwise (V4: mxfp4)
    # From the safetensors headers, when the planner has them: bytes of each ParamCounts group as stored.
    checkpoint_bytes: tuple[tuple[str, int], ...] = ()
    # From the Ollama registry manifest of a tag: the GGUF weight layers' bytes and the tag's quantisation.
    gguf_bytes: int = 0
    gguf_quant: str | None = None

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def attention_sinks(self) -> bool:
        """One learned sink logit per head, which the attention kernel must add to its softmax."""
        return self.model_type in SINK_MODEL_TYPES

    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.sliding_window_layers - self.recurrent_layers - self.stateless_layers

    @property
    def attention_layers(self) -> int:
        """Layers that keep a KV cache: full and sliding-window attention."""
        return self.full_attention_layers + self.sliding_window_layers

    def kv_elements_per_layer_token(self) -> int:
        """Elements one token adds to one attention layer's cache: K and V per KV head, or MLA's one latent."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_elements_per_token(self) -> int:
        """Cache elements one token adds over the full-attention layers."""
        return self.kv_elements_per_layer_token() * self.full_attention_layers

    def kv_elements_sliding(self) -> int:
        """K and V elements per token in sliding-window layers (bounded by the window)."""
        return self.kv_elements_per_layer_token() * self.sliding_window_layers

    def recurrent_state_bytes(self, conv_bytes: float = 2.0, ssm_bytes: float | None = None) -> float:
        """One sequence's recurrent state over all linear-attention / Mamba layers (all heads)."""
        ssm = self.recurrent_ssm_bytes if ssm_bytes is None else ssm_bytes
        return self.recurrent_layers * (self.recurrent_conv_elements * conv_bytes + self.recurrent_ssm_elements * ssm)

    @property
    def checkpoint_weight_bytes(self) -> int | None:
        """Bytes the engine loads, from the safetensors headers (MTP heads left out); None without headers."""
        if not self.checkpoint_bytes:
            return None
        return sum(b for group, b in self.checkpoint_bytes if group != "mtp")

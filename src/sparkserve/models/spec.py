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
    vision: int = 0  # vision tower and projector of a multimodal checkpoint

    @property
    def total(self) -> int:
        return (
            self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts
            + self.moe_shared + self.other + self.vision
        )

    @property
    def active(self) -> int:
        """Parameters one token uses, embeddings included (Qwen's cards count so; OpenAI's
        gpt-oss card leaves the input embedding out: `active - embedding`)."""
        return self.total - self.experts + self.experts_active - self.vision


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

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.sliding_window_layers

    def kv_elements_per_token(self) -> int:
        """K and V elements one token adds to the cache, over the full-attention layers."""
        return 2 * self.num_kv_heads * self.head_dim * self.full_attention_layers

    def kv_elements_sliding(self) -> int:
        """K and V elements per token in sliding-window layers (bounded by the window)."""
        return 2 * self.num_kv_heads * self.head_dim * self.sliding_window_layers

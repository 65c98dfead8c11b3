"""The engine settings a plan was made with, typed: what the memory model used and the command will carry.

`MemoryPlan.settings` holds one of these. Readers that handle any engine use the fields every
settings type shares (`max_model_len`, `concurrency`, `kv_cache_dtype`); readers that know the
engine's family narrow with `vllm_settings(...)` / `gguf_settings(...)`, which fail loudly instead
of returning a missing key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class VllmSettings:
    """vLLM-style engines (HF checkpoints, paged KV cache, a utilisation budget)."""

    gpu_memory_utilization: float
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int = 16
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    enable_chunked_prefill: bool = True

    @property
    def concurrency(self) -> int:
        return self.max_num_seqs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GgufSettings:
    """llama.cpp-style engines (Ollama): a fixed context per request times parallel requests."""

    num_ctx: int
    num_parallel: int
    kv_cache_type: str

    @property
    def max_model_len(self) -> int:
        return self.num_ctx

    @property
    def concurrency(self) -> int:
        return self.num_parallel

    @property
    def kv_cache_dtype(self) -> str:
        return self.kv_cache_type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EngineSettings = VllmSettings | GgufSettings


def vllm_settings(settings: EngineSettings) -> VllmSettings:
    """`settings` as vLLM-style settings; a TypeError names the mix-up instead of a KeyError later."""
    if not isinstance(settings, VllmSettings):
        raise TypeError(f"expected vLLM-style settings, got {type(settings).__name__}")
    return settings


def gguf_settings(settings: EngineSettings) -> GgufSettings:
    if not isinstance(settings, GgufSettings):
        raise TypeError(f"expected GGUF-engine settings, got {type(settings).__name__}")
    return settings


__all__ = ["EngineSettings", "GgufSettings", "VllmSettings", "gguf_settings", "vllm_settings"]

"""The default stack: what `sparkserve plan` with no arguments plans (and `init` will write)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceDefaults:
    name: str
    engine: str
    model: str
    quant: str | None
    port: int
    settings: dict = field(default_factory=dict)


VLLM_SERVICE = ServiceDefaults(
    name="vllm-qwen3-32b",
    engine="vllm",
    model="Qwen/Qwen3-32B",
    quant="fp8",  # BF16 (65 GB) would leave a Spark's KV cache and Ollama no room and halve decode speed
    port=8000,  # every vLLM setting is left to the recommendation (plan/recommend.py)
)

# Ollama has no fixed model; the plan reserves room for one resident model (keep-alive 30 min).
OLLAMA_SERVICE = ServiceDefaults(
    name="ollama",
    engine="ollama",
    model="qwen3:8b",
    quant=None,
    port=11434,
    settings={"num_ctx": 8192, "num_parallel": 1},
)

DEFAULT_SERVICES = (VLLM_SERVICE, OLLAMA_SERVICE)

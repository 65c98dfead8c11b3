"""Ollama: defaults and settings that shape its memory and speed."""

from __future__ import annotations

from sparkserve.plan.settings import GgufSettings

NAME = "ollama"

# Ollama server defaults (docs/faq.md, envconfig/config.go): context 4096 tokens per request,
# one parallel request per model, KV cache in f16, flash attention off unless set.
DEFAULT_NUM_CTX = 4096
DEFAULT_NUM_PARALLEL = 1
DEFAULT_KV_CACHE_TYPE = "f16"
KV_CACHE_TYPES = ("auto", "f16", "q8_0", "q4_0")  # OLLAMA_KV_CACHE_TYPE values (docs/faq.md); auto = f16
DEFAULT_KEEP_ALIVE = "5m"
# llama.cpp evaluates prompts in micro-batches of n_ubatch tokens (llama.cpp common default 512);
# the compute buffer is sized for one micro-batch.
DEFAULT_NUM_BATCH = 512


def recommended_env(settings: GgufSettings, keep_alive: str = "30m") -> dict[str, str]:
    """Server environment for a planned Ollama deployment."""
    env = {
        "OLLAMA_KEEP_ALIVE": keep_alive,
        "OLLAMA_CONTEXT_LENGTH": str(settings.num_ctx),
        "OLLAMA_NUM_PARALLEL": str(settings.num_parallel),
        "OLLAMA_FLASH_ATTENTION": "1",
    }
    if settings.kv_cache_type != DEFAULT_KV_CACHE_TYPE:
        env["OLLAMA_KV_CACHE_TYPE"] = settings.kv_cache_type
    return env


# Multi-arch (amd64 and arm64) image; a stack's `image` key pins a release.
IMAGE = "ollama/ollama:latest"
CONTAINER_PORT = 11434
MODELS_DIR = "/root/.ollama"  # OLLAMA_MODELS defaults to <home>/.ollama/models


def image_for(hw) -> str:
    """The Ollama image for this hardware: one multi-arch image serves x86_64 and arm64."""
    return IMAGE


def healthcheck_test() -> list[str]:
    """The image ships no curl: `ollama list` asks the local API and fails while it is down."""
    return ["CMD", "ollama", "list"]


# Outside a container Ollama keeps models in ~/.ollama/models unless OLLAMA_MODELS says otherwise.
NATIVE_MODELS_DIR = "~/.ollama/models"


def server_env(listen: str, models_dir: str, settings: GgufSettings) -> dict[str, str]:
    """`ollama serve` environment for a native service: where it listens (OLLAMA_HOST, host:port),
    where it keeps models, and the planned settings (keep-alive, context, parallel requests)."""
    return {"OLLAMA_HOST": listen, "OLLAMA_MODELS": models_dir, **recommended_env(settings)}

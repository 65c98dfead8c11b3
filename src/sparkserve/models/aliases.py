"""Names that map onto a bundled config: HF re-releases of the same shape, and Ollama library tags."""

from __future__ import annotations

from typing import Any, NamedTuple

# Qwen's 2507 and Coder re-releases keep the architecture and raise the native context.
_QWEN3_2507_CONTEXT = {"max_position_embeddings": 262_144}  # model cards: "Context Length: 262,144 natively"


class Alias(NamedTuple):
    base: str  # bundled HF id whose config.json describes this checkpoint
    overrides: dict[str, Any]  # config.json keys the alias changes


ALIASES: dict[str, Alias] = {
    "Qwen/Qwen3-30B-A3B-Instruct-2507": Alias("Qwen/Qwen3-30B-A3B", _QWEN3_2507_CONTEXT),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": Alias("Qwen/Qwen3-30B-A3B", _QWEN3_2507_CONTEXT),
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": Alias("Qwen/Qwen3-30B-A3B", _QWEN3_2507_CONTEXT),
    "Qwen/Qwen3-235B-A22B-Instruct-2507": Alias("Qwen/Qwen3-235B-A22B", _QWEN3_2507_CONTEXT),
    "Qwen/Qwen3-235B-A22B-Thinking-2507": Alias("Qwen/Qwen3-235B-A22B", _QWEN3_2507_CONTEXT),
    # Meta's pre-rename repo ids and the base checkpoints share the Instruct architecture.
    "meta-llama/Meta-Llama-3.1-8B-Instruct": Alias("meta-llama/Llama-3.1-8B-Instruct", {}),
    "meta-llama/Meta-Llama-3.1-70B-Instruct": Alias("meta-llama/Llama-3.1-70B-Instruct", {}),
    "meta-llama/Llama-3.1-8B": Alias("meta-llama/Llama-3.1-8B-Instruct", {}),
    "meta-llama/Llama-3.1-70B": Alias("meta-llama/Llama-3.1-70B-Instruct", {}),
}

# Repo-name suffixes of the publishers' pre-quantised re-uploads (Qwen/Qwen3-32B-FP8, Qwen/Qwen3-32B-AWQ,
# Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4) as cased on the Hub, and the checkpoint quantisation each ships.
QUANT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("-GPTQ-Int4", "gptq"),
    ("-GPTQ-Int8", "gptq"),
    ("-FP8", "fp8"),
    ("-AWQ", "awq"),
)


class OllamaModel(NamedTuple):
    sizes: dict[str, str]  # tag size -> HF id (bundled or alias)
    latest: str | None  # size the bare name / ":latest" points at on ollama.com/library
    default_quant: str  # quantisation of the library's untagged-quant builds
    variants: dict[tuple[str, str], str] = {}  # (size, tag suffix) -> HF id of a re-release


# Sizes and `latest` targets as listed on ollama.com/library/<name>/tags; the library's default
# builds are Q4_K_M GGUFs, except gpt-oss which Ollama ships in its native MXFP4.
OLLAMA: dict[str, OllamaModel] = {
    "qwen3": OllamaModel(
        sizes={
            "0.6b": "Qwen/Qwen3-0.6B",
            "1.7b": "Qwen/Qwen3-1.7B",
            "4b": "Qwen/Qwen3-4B",
            "8b": "Qwen/Qwen3-8B",
            "14b": "Qwen/Qwen3-14B",
            "30b": "Qwen/Qwen3-30B-A3B",
            "30b-a3b": "Qwen/Qwen3-30B-A3B",
            "32b": "Qwen/Qwen3-32B",
            "235b": "Qwen/Qwen3-235B-A22B",
            "235b-a22b": "Qwen/Qwen3-235B-A22B",
        },
        latest="8b",
        default_quant="q4_k_m",
        variants={
            ("30b-a3b", "instruct-2507"): "Qwen/Qwen3-30B-A3B-Instruct-2507",
            ("30b-a3b", "thinking-2507"): "Qwen/Qwen3-30B-A3B-Thinking-2507",
            ("235b-a22b", "instruct-2507"): "Qwen/Qwen3-235B-A22B-Instruct-2507",
            ("235b-a22b", "thinking-2507"): "Qwen/Qwen3-235B-A22B-Thinking-2507",
        },
    ),
    "qwen3-coder": OllamaModel({"30b": "Qwen/Qwen3-Coder-30B-A3B-Instruct"}, "30b", "q4_k_m"),
    "qwen2.5": OllamaModel({"7b": "Qwen/Qwen2.5-7B-Instruct"}, "7b", "q4_k_m"),
    "llama3.1": OllamaModel(
        {"8b": "meta-llama/Llama-3.1-8B-Instruct", "70b": "meta-llama/Llama-3.1-70B-Instruct"}, "8b", "q4_k_m"
    ),
    "llama3.3": OllamaModel({"70b": "meta-llama/Llama-3.3-70B-Instruct"}, "70b", "q4_k_m"),
    "gpt-oss": OllamaModel({"20b": "openai/gpt-oss-20b", "120b": "openai/gpt-oss-120b"}, "20b", "mxfp4"),
    "gemma3": OllamaModel({"4b": "google/gemma-3-4b-it", "27b": "google/gemma-3-27b-it"}, "4b", "q4_k_m"),
    # deepseek-r1:latest is the 8b Qwen3 distill, which is not bundled.
    "deepseek-r1": OllamaModel(
        {"14b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "70b": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B"},
        None,
        "q4_k_m",
    ),
    "mistral-small3.2": OllamaModel({"24b": "mistralai/Mistral-Small-3.2-24B-Instruct-2506"}, "24b", "q4_k_m"),
}

# Tag words that name a quantisation without spelling it as a GGUF type.
OLLAMA_QUANT_WORDS = {"qat": "q4_0"}  # gemma3 "-it-qat" tags are quantisation-aware-trained Q4_0 builds

"""Names that map onto a bundled config: HF re-releases of the same shape, and Ollama library tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

# Qwen's 2507 and Coder re-releases keep the architecture and raise the native context.
_QWEN3_2507_CONTEXT = {"max_position_embeddings": 262_144}  # model cards: "Context Length: 262,144 natively"
# Qwen2.5 base repos (7B and up) and the DeepSeek-R1 distills keep the Instruct shape with 131,072 positions
# (config.json max_position_embeddings; the Instruct configs say 32,768 and reach 128K with YaRN).
_CONTEXT_128K = {"max_position_embeddings": 131_072}
# Llama 3 (April 2024) has the Llama 3.1 shapes with 8K positions and no llama3 RoPE scaling.
_LLAMA3_8K = {"max_position_embeddings": 8192, "rope_scaling": None}
# Llama 2 7B is CodeLlama-7B's shape with the 32,000-token vocabulary, 4K positions and rope_theta 10,000.
_LLAMA2_7B = {"vocab_size": 32_000, "max_position_embeddings": 4096, "rope_theta": 10_000.0}
# Granite 3.2/3.3 keep the 3.1 shapes and add four tokens (vocab 49,159, as the indexed granite-3.3 configs).
_GRANITE33 = {"vocab_size": 49_159}


class Alias(NamedTuple):
    base: str  # bundled HF id whose config.json describes this checkpoint
    overrides: dict[str, Any]  # config.json keys the alias changes


ALIASES: dict[str, Alias] = {
    # Qwen3.6-27B keeps Qwen3.5-27B's architecture (Qwen3_5ForConditionalGeneration, same widths; model card)
    "Qwen/Qwen3.6-27B": Alias("Qwen/Qwen3.5-27B", {}),
    # Qwen3-Coder-Next keeps Qwen3-Next-80B-A3B's shape: 48 hybrid layers (36 Gated DeltaNet + 12 gated attention,
    # 16 query / 2 KV heads of 256), 512 experts with 10 routed + 1 shared, 262,144 positions; llama.cpp reads its
    # GGUF as "qwen3next 80B.A3B", 79.67 B parameters (Qwen/Qwen3-Coder-Next-GGUF in indexed llama-bench reports).
    "Qwen/Qwen3-Coder-Next": Alias("Qwen/Qwen3-Next-80B-A3B-Instruct", {}),
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
    "meta-llama/Meta-Llama-3-8B-Instruct": Alias("meta-llama/Llama-3.1-8B-Instruct", _LLAMA3_8K),
    "meta-llama/Meta-Llama-3-8B": Alias("meta-llama/Llama-3.1-8B-Instruct", _LLAMA3_8K),
    "meta-llama/Meta-Llama-3-70B-Instruct": Alias("meta-llama/Llama-3.1-70B-Instruct", _LLAMA3_8K),
    "meta-llama/Meta-Llama-3-70B": Alias("meta-llama/Llama-3.1-70B-Instruct", _LLAMA3_8K),
    "meta-llama/Llama-2-7b-hf": Alias("codellama/CodeLlama-7b-hf", _LLAMA2_7B),
    "meta-llama/Llama-2-7b-chat-hf": Alias("codellama/CodeLlama-7b-hf", _LLAMA2_7B),
    "meta-llama/Llama-3.2-1B": Alias("meta-llama/Llama-3.2-1B-Instruct", {}),
    "meta-llama/Llama-3.2-3B": Alias("meta-llama/Llama-3.2-3B-Instruct", {}),
    "meta-llama/Llama-4-Scout-17B-16E": Alias("meta-llama/Llama-4-Scout-17B-16E-Instruct", {}),
    "meta-llama/Llama-4-Maverick-17B-128E": Alias("meta-llama/Llama-4-Maverick-17B-128E-Instruct", {}),
    # NVIDIA's HelpSteer2 RLHF fine-tune of Llama-3.1-70B-Instruct: same LlamaForCausalLM shape.
    "nvidia/Llama-3.1-Nemotron-70B-Instruct-HF": Alias("meta-llama/Llama-3.1-70B-Instruct", {}),
    # Qwen2.5 base checkpoints; Coder and QwQ re-use the general model's Qwen2ForCausalLM shape.
    "Qwen/Qwen2.5-0.5B": Alias("Qwen/Qwen2.5-0.5B-Instruct", {}),
    "Qwen/Qwen2.5-1.5B": Alias("Qwen/Qwen2.5-1.5B-Instruct", {}),
    "Qwen/Qwen2.5-3B": Alias("Qwen/Qwen2.5-3B-Instruct", {}),
    "Qwen/Qwen2.5-7B": Alias("Qwen/Qwen2.5-7B-Instruct", _CONTEXT_128K),
    "Qwen/Qwen2.5-14B": Alias("Qwen/Qwen2.5-14B-Instruct", _CONTEXT_128K),
    "Qwen/Qwen2.5-32B": Alias("Qwen/Qwen2.5-32B-Instruct", _CONTEXT_128K),
    "Qwen/Qwen2.5-72B": Alias("Qwen/Qwen2.5-72B-Instruct", _CONTEXT_128K),
    "Qwen/Qwen2.5-Coder-7B-Instruct": Alias("Qwen/Qwen2.5-7B-Instruct", {}),
    # Qwen2-7B: the same Qwen2ForCausalLM shape (Qwen_2_7B_CONFIG in NVIDIA/TensorRT-LLM's test_modeling_qwen.py).
    "Qwen/Qwen2-7B-Instruct": Alias("Qwen/Qwen2.5-7B-Instruct", {}),
    "Qwen/Qwen2-7B": Alias("Qwen/Qwen2.5-7B-Instruct", _CONTEXT_128K),
    "Qwen/Qwen2.5-Coder-32B-Instruct": Alias("Qwen/Qwen2.5-32B-Instruct", {}),
    # QwQ-32B config.json (quoted in vllm-project/vllm#17306): Qwen2.5-32B shape, 40,960 positions.
    "Qwen/QwQ-32B": Alias("Qwen/Qwen2.5-32B-Instruct", {"max_position_embeddings": 40_960}),
    "Qwen/Qwen1.5-MoE-A2.7B-Chat": Alias("Qwen/Qwen1.5-MoE-A2.7B", {}),
    # DeepSeek-R1 distills keep their base model's architecture (model card); the 1.5B is bundled because
    # it unties the embeddings of Qwen2.5-Math-1.5B.
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": Alias("Qwen/Qwen2.5-7B-Instruct", _CONTEXT_128K),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": Alias("Qwen/Qwen2.5-32B-Instruct", _CONTEXT_128K),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": Alias("meta-llama/Llama-3.1-8B-Instruct", {}),
    # Model card: "The model architecture of DeepSeek-R1-0528-Qwen3-8B is identical to that of Qwen3-8B".
    "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B": Alias("Qwen/Qwen3-8B", _CONTEXT_128K),
    # DeepSeek-R1 "is trained based on DeepSeek-V3-Base" (deepseek-ai/DeepSeek-R1 README: architecture as in the
    # DeepSeek-V3 repository); R1-0528 is its post-training upgrade, NVIDIA's NIM model card: "Network Architecture:
    # DeepSeek-V3-Base", 671B total / 37B activated (docs.api.nvidia.com/nim/reference/deepseek-ai-deepseek-r1-0528).
    # Bare "deepseek-r1" stays the Ollama tag, so only the 0528 repo is aliased here.
    "deepseek-ai/DeepSeek-R1-0528": Alias("deepseek-ai/DeepSeek-V3", {}),
    "mistralai/Mistral-7B-v0.3": Alias("mistralai/Mistral-7B-Instruct-v0.3", {}),
    # v0.2 is v0.3 before the vocabulary grew to 32,768; v0.1 also slides a 4,096-token window on every layer.
    "mistralai/Mistral-7B-Instruct-v0.2": Alias("mistralai/Mistral-7B-Instruct-v0.3", {"vocab_size": 32_000}),
    "mistralai/Mistral-7B-Instruct-v0.1": Alias(
        "mistralai/Mistral-7B-Instruct-v0.3", {"vocab_size": 32_000, "sliding_window": 4096, "rope_theta": 10_000.0}
    ),
    "mistralai/Mistral-7B-v0.1": Alias(
        "mistralai/Mistral-7B-Instruct-v0.3", {"vocab_size": 32_000, "sliding_window": 4096, "rope_theta": 10_000.0}
    ),
    "mistralai/Mistral-Nemo-Base-2407": Alias("mistralai/Mistral-Nemo-Instruct-2407", {}),
    "mistralai/Mixtral-8x7B-v0.1": Alias("mistralai/Mixtral-8x7B-Instruct-v0.1", {}),
    # Mistral Small 3.2 is "a minor update of Mistral-Small-3.1-24B-Instruct-2503" (model card): same config keys.
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503": Alias("mistralai/Mistral-Small-3.2-24B-Instruct-2506", {}),
    "mistralai/Mistral-Small-3.1-24B-Base-2503": Alias("mistralai/Mistral-Small-3.2-24B-Instruct-2506", {}),
    "codellama/CodeLlama-7b-Instruct-hf": Alias("codellama/CodeLlama-7b-hf", {}),
    # Phi-3-mini-128k and Phi-3.5-mini keep Phi-3-mini's shape with LongRoPE to 128K positions.
    "microsoft/Phi-3-mini-128k-instruct": Alias(
        "microsoft/Phi-3-mini-4k-instruct", {"max_position_embeddings": 131_072, "sliding_window": 262_144}
    ),
    "microsoft/Phi-3.5-mini-instruct": Alias(
        "microsoft/Phi-3-mini-4k-instruct", {"max_position_embeddings": 131_072, "sliding_window": 262_144}
    ),
    "ibm-granite/granite-3.3-8b-instruct": Alias("ibm-granite/granite-3.1-8b-instruct", _GRANITE33),
    "ibm-granite/granite-3.3-2b-instruct": Alias("ibm-granite/granite-3.1-2b-instruct", _GRANITE33),
    "google/gemma-2b-it": Alias("google/gemma-2b", {}),
    "google/gemma-7b-it": Alias("google/gemma-7b", {}),
    "google/gemma-2-2b": Alias("google/gemma-2-2b-it", {}),
    "google/gemma-2-9b": Alias("google/gemma-2-9b-it", {}),
    "google/gemma-2-27b": Alias("google/gemma-2-27b-it", {}),
    "google/gemma-3-1b-pt": Alias("google/gemma-3-1b-it", {}),
    "google/gemma-3-12b-pt": Alias("google/gemma-3-12b-it", {}),
    # Gemma 4 base (pre-trained) repos: the instruction-tuned shapes (convert_gemma4_weights.py writes both)
    "google/gemma-4-31B": Alias("google/gemma-4-31B-it", {}),
    "google/gemma-4-26B-A4B": Alias("google/gemma-4-26B-A4B-it", {}),
    "google/gemma-4-E4B": Alias("google/gemma-4-E4B-it", {}),
    "google/gemma-4-E2B": Alias("google/gemma-4-E2B-it", {}),
}

# Third-party pre-quantised re-uploads keep the original repo name under another org and add a suffix:
# RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, nvidia/Llama-3.1-8B-Instruct-FP8,
# hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4. Every catalog name gets an alias per (org, suffix) that
# the org publishes, with the base shape and the shipped quantisation; Neural Magic's repos moved to RedHatAI
# (both names appear in logs). bitsandbytes re-uploads (unsloth/*-bnb-4bit) are not aliased: no plan for them.
_RED_HAT_SUFFIXES = (
    ("-FP8-dynamic", "fp8"),
    ("-FP8", "fp8"),
    ("-quantized.w8a8", "int8"),  # INT8 weights and activations (compressed-tensors W8A8)
    ("-quantized.w4a16", "gptq"),  # INT4 weights, group 128, 16-bit activations (GPTQ)
    ("-NVFP4", "nvfp4"),
)
# A bare name ("Llama-3.3-70B-Instruct-FP8") matches the last org that publishes it, so RedHatAI goes last.
REQUANT_SUFFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "nvidia": (("-FP8", "fp8"), ("-FP4", "nvfp4"), ("-NVFP4", "nvfp4")),  # TensorRT Model Optimizer exports
    "hugging-quants": (("-AWQ-INT4", "awq"), ("-GPTQ-INT4", "gptq")),
    "neuralmagic": _RED_HAT_SUFFIXES,
    "RedHatAI": _RED_HAT_SUFFIXES,
}


def _requant_aliases(aliases: dict[str, Alias]) -> dict[str, Alias]:
    folder = Path(__file__).with_name("bundled")  # catalog reads the same files through importlib.resources
    bundled = sorted(f.name[: -len(".json")].replace("--", "/", 1) for f in folder.glob("*.json"))
    known = {name: Alias(name, {}) for name in bundled} | aliases
    out: dict[str, Alias] = {}
    for org, suffixes in REQUANT_SUFFIXES.items():
        for name, alias in known.items():
            for suffix, quant in suffixes:
                overrides = {**alias.overrides, "quantization_config": {"quant_method": quant}}
                out[f"{org}/{name.split('/', 1)[1]}{suffix}"] = Alias(alias.base, overrides)
    return out


ALIASES.update({k: v for k, v in _requant_aliases(ALIASES).items() if k not in ALIASES})

# Repo-name suffixes of the publishers' pre-quantised re-uploads (Qwen/Qwen3-32B-FP8, Qwen/Qwen3-32B-AWQ,
# Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4) as cased on the Hub, and the checkpoint quantisation each ships.
# Matched case-insensitively, first hit wins; the third-party suffixes (REQUANT_SUFFIXES) also work on a bare name
# or one under the original org (Llama-3.3-70B-Instruct-FP8-dynamic).
QUANT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("-GPTQ-Int4", "gptq"),
    ("-GPTQ-Int8", "gptq"),
    ("-FP8-dynamic", "fp8"),
    ("-FP8", "fp8"),
    ("-AWQ-INT4", "awq"),
    ("-AWQ", "awq"),
    ("-quantized.w8a8", "int8"),
    ("-quantized.w4a16", "gptq"),
    ("-NVFP4", "nvfp4"),
    ("-FP4", "nvfp4"),
)


class OllamaModel(NamedTuple):
    sizes: dict[str, str]  # tag size -> HF id (bundled or alias)
    latest: str | None  # size the bare name / ":latest" points at on ollama.com/library
    default_quant: str  # quantisation of the library's untagged-quant builds
    variants: dict[tuple[str, str], str] = {}  # (size, tag suffix) -> HF id of a re-release


# Sizes and `latest` targets as listed on ollama.com/library/<name>/tags; the library's default
# builds are Q4_K_M GGUFs, except gpt-oss which Ollama ships in its native MXFP4 and the families uploaded
# before mid-2024 (llama2/3, gemma/gemma2, mistral, mixtral, codellama, phi3/3.5, qwen2, mistral-nemo,
# tinyllama), whose default tags are Q4_0 (their listed sizes: mistral:7b 4.1GB, gemma2:9b 5.4GB, llama3:8b 4.7GB).
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
    "qwen2.5": OllamaModel(
        {
            "0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
            "1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
            "3b": "Qwen/Qwen2.5-3B-Instruct",
            "7b": "Qwen/Qwen2.5-7B-Instruct",
            "14b": "Qwen/Qwen2.5-14B-Instruct",
            "32b": "Qwen/Qwen2.5-32B-Instruct",
            "72b": "Qwen/Qwen2.5-72B-Instruct",
        },
        "7b",
        "q4_k_m",
    ),
    "qwen2.5-coder": OllamaModel(
        {"7b": "Qwen/Qwen2.5-Coder-7B-Instruct", "32b": "Qwen/Qwen2.5-Coder-32B-Instruct"}, "7b", "q4_k_m"
    ),
    "qwq": OllamaModel({"32b": "Qwen/QwQ-32B"}, "32b", "q4_k_m"),
    "llama3.1": OllamaModel(
        {"8b": "meta-llama/Llama-3.1-8B-Instruct", "70b": "meta-llama/Llama-3.1-70B-Instruct"}, "8b", "q4_k_m"
    ),
    "llama3": OllamaModel(
        {"8b": "meta-llama/Meta-Llama-3-8B-Instruct", "70b": "meta-llama/Meta-Llama-3-70B-Instruct"}, "8b", "q4_0"
    ),
    "llama2": OllamaModel({"7b": "meta-llama/Llama-2-7b-chat-hf"}, "7b", "q4_0"),
    "tinyllama": OllamaModel({"1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"}, "1.1b", "q4_0"),
    "llama3.2": OllamaModel(
        {"1b": "meta-llama/Llama-3.2-1B-Instruct", "3b": "meta-llama/Llama-3.2-3B-Instruct"}, "3b", "q4_k_m"
    ),
    "llama3.3": OllamaModel({"70b": "meta-llama/Llama-3.3-70B-Instruct"}, "70b", "q4_k_m"),
    # llama4:scout is the 16x17b build and llama4:maverick the 128x17b one (ollama.com/library/llama4).
    "llama4": OllamaModel(
        {
            "scout": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
            "16x17b": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
            "maverick": "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
            "128x17b": "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        },
        "scout",
        "q4_k_m",
    ),
    "gpt-oss": OllamaModel({"20b": "openai/gpt-oss-20b", "120b": "openai/gpt-oss-120b"}, "20b", "mxfp4"),
    "gemma": OllamaModel({"2b": "google/gemma-2b-it", "7b": "google/gemma-7b-it"}, "7b", "q4_0"),
    "gemma2": OllamaModel(
        {"2b": "google/gemma-2-2b-it", "9b": "google/gemma-2-9b-it", "27b": "google/gemma-2-27b-it"}, "9b", "q4_0"
    ),
    "gemma3": OllamaModel(
        {
            "1b": "google/gemma-3-1b-it",
            "4b": "google/gemma-3-4b-it",
            "12b": "google/gemma-3-12b-it",
            "27b": "google/gemma-3-27b-it",
        },
        "4b",
        "q4_k_m",
    ),
    # deepseek-r1:latest and :8b are the R1-0528 Qwen3-8B distill (Qwen3-8B architecture).
    "deepseek-r1": OllamaModel(
        {
            "1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
            "7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "8b": "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B",
            "14b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
            "32b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "70b": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        },
        "8b",
        "q4_k_m",
    ),
    "mistral": OllamaModel({"7b": "mistralai/Mistral-7B-Instruct-v0.3"}, "7b", "q4_0"),  # v0.3 since 2024-05
    "mixtral": OllamaModel({"8x7b": "mistralai/Mixtral-8x7B-Instruct-v0.1"}, "8x7b", "q4_0"),
    "mistral-small3.1": OllamaModel({"24b": "mistralai/Mistral-Small-3.1-24B-Instruct-2503"}, "24b", "q4_k_m"),
    "mistral-small3.2": OllamaModel({"24b": "mistralai/Mistral-Small-3.2-24B-Instruct-2506"}, "24b", "q4_k_m"),
    # phi3:mini is the 3.8b build; phi3:medium (14b) is not bundled.
    "phi3": OllamaModel(
        {"mini": "microsoft/Phi-3-mini-4k-instruct", "3.8b": "microsoft/Phi-3-mini-4k-instruct"}, "3.8b", "q4_0"
    ),
    "phi3.5": OllamaModel({"3.8b": "microsoft/Phi-3.5-mini-instruct"}, "3.8b", "q4_0"),
    "phi4": OllamaModel({"14b": "microsoft/phi-4"}, "14b", "q4_k_m"),
    "mistral-nemo": OllamaModel({"12b": "mistralai/Mistral-Nemo-Instruct-2407"}, "12b", "q4_0"),
    "codellama": OllamaModel({"7b": "codellama/CodeLlama-7b-Instruct-hf"}, "7b", "q4_0"),
    "granite3.1-dense": OllamaModel(
        {"2b": "ibm-granite/granite-3.1-2b-instruct", "8b": "ibm-granite/granite-3.1-8b-instruct"}, "2b", "q4_k_m"
    ),
    "granite3.3": OllamaModel(
        {"2b": "ibm-granite/granite-3.3-2b-instruct", "8b": "ibm-granite/granite-3.3-8b-instruct"}, "8b", "q4_k_m"
    ),
    "qwen2": OllamaModel({"7b": "Qwen/Qwen2-7B-Instruct"}, "7b", "q4_0"),
    # 2026 families: hybrid linear attention, Mamba hybrids, latent attention (Q4_K_M defaults like the 2025 uploads)
    "qwen3.6": OllamaModel(
        {"27b": "Qwen/Qwen3.6-27B", "35b": "Qwen/Qwen3.6-35B-A3B", "35b-a3b": "Qwen/Qwen3.6-35B-A3B"}, "35b", "q4_k_m"
    ),
    "qwen3.5": OllamaModel({"27b": "Qwen/Qwen3.5-27B", "122b": "Qwen/Qwen3.5-122B-A10B"}, "27b", "q4_k_m"),
    "glm-4.7-flash": OllamaModel({"30b": "zai-org/GLM-4.7-Flash"}, "30b", "q4_k_m"),
    "qwen3-next": OllamaModel({"80b": "Qwen/Qwen3-Next-80B-A3B-Instruct"}, "80b", "q4_k_m"),
    "nemotron3": OllamaModel({"30b": "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"}, "30b", "q4_k_m"),
    "nemotron-3-nano": OllamaModel({"30b": "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"}, "30b", "q4_k_m"),
    "nemotron-nano": OllamaModel({"9b": "nvidia/NVIDIA-Nemotron-Nano-9B-v2"}, "9b", "q4_k_m"),
    "deepseek-v3": OllamaModel({"671b": "deepseek-ai/DeepSeek-V3"}, "671b", "q4_k_m"),
    # ollama.com/library/gemma4 lists e2b, e4b, 26b and 31b (and tags such as 26b-a4b-it-q8_0); which size
    # `latest` points at is not recorded here, so the bare name asks for a size
    "gemma4": OllamaModel(
        {
            "e2b": "google/gemma-4-E2B-it",
            "e4b": "google/gemma-4-E4B-it",
            "26b": "google/gemma-4-26B-A4B-it",
            "26b-a4b": "google/gemma-4-26B-A4B-it",
            "31b": "google/gemma-4-31B-it",
        },
        None,
        "q4_k_m",
    ),
}

# Tag words that name a quantisation without spelling it as a GGUF type.
OLLAMA_QUANT_WORDS = {"qat": "q4_0"}  # gemma3 "-it-qat" tags are quantisation-aware-trained Q4_0 builds

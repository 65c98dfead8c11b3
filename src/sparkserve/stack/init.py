"""The stack `sparkserve init` writes: the default services, with vLLM's arguments sized by the planner.

The file is written as text (not serialised) so every sized number carries the reason for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparkserve.errors import UserError
from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import StackPlan
from sparkserve.plan.recommend import SEQS_OVER_FULL_LENGTH
from sparkserve.plan.settings import gguf_settings, vllm_settings
from sparkserve.plan.speed import Workload
from sparkserve.stack.defaults import OLLAMA_SERVICE, VLLM_SERVICE
from sparkserve.stack.schema import DEFAULT_BIND, DEFAULT_HF_CACHE

# Qwen3-32B by weight precision: the on-the-fly FP8 of the BF16 checkpoint, or Qwen's AWQ upload.
VARIANTS: dict[str, tuple[str, str]] = {
    "bf16": ("Qwen/Qwen3-32B", "bf16"),
    "fp8": ("Qwen/Qwen3-32B", "fp8"),
    "int4": ("Qwen/Qwen3-32B-AWQ", "awq"),
}
VARIANT_WHY = {
    "bf16": "full precision: twice FP8's weight bytes, so about half its decode speed",
    "fp8": "half BF16's bytes: decode is memory-bound, so about twice as fast, at near-BF16 quality",
    "int4": "AWQ 4-bit: the fewest bytes per token, for GPUs where FP8 does not fit or is not native",
}
OLLAMA_MODELS_HOST = "/opt/ollama"
OLLAMA_KEEP_ALIVE = "30m"


def default_variant(hw: HardwareProfile) -> str:
    """FP8 where the GPU has native FP8 and the stack fits, else 4-bit AWQ."""
    if hw.native_fp8 and plan_default_stack(hw, "fp8").fits:
        return "fp8"
    return "int4"


def plan_default_stack(hw: HardwareProfile, variant: str) -> StackPlan:
    """Plan the default services for `variant`: vLLM's settings are the recommendation beside Ollama."""
    from sparkserve.stack.planning import plan_services

    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    model, quant = VARIANTS[variant]
    vllm = dataclasses.replace(VLLM_SERVICE, model=model, quant=quant)
    return plan_services(hw, (vllm, OLLAMA_SERVICE), Workload())


def default_stack_text(hw: HardwareProfile, variant: str | None = None) -> str:
    """The TOML of the default stack for `hw`, each sized value with its reason: the recommended
    configuration (plan/recommend.py), so `plan` on the file prints the same arguments."""
    variant = variant or default_variant(hw)
    stack = plan_default_stack(hw, variant)
    asked, oplan = stack.services
    rec = asked.recommendation
    vplan = rec.plan if rec is not None and rec.why_none is None else asked
    vmem, omem = vplan.memory, oplan.memory
    vset, oset = vllm_settings(vmem.settings), gguf_settings(omem.settings)
    util = vset.gpu_memory_utilization
    room = "Ollama and the OS" if hw.unified else "Ollama"
    left = hw.gpu_memory_gib * (1 - util)
    model, quant = vplan.deployment.model.id, vplan.deployment.quant.id
    changed = [f"# Changed from the {variant} variant to fit: {note}" for note in (rec.notes if rec else [])]
    parallel = ([f"tensor_parallel_size = {vset.tensor_parallel_size}  # {vplan.deployment.gpus} GPUs"]
                if vset.tensor_parallel_size > 1 else [])
    lines = [
        "# sparkserve stack: `sparkserve plan` sizes it, `sparkserve render` writes docker-compose.yml from it.",
        f"# Written by `sparkserve init --hardware {hw.id} --variant {variant}`.",
        "# Secrets (HF_TOKEN, VLLM_API_KEY) live in .env, never in this file.",
        "",
        "[stack]",
        f'hardware = "{hw.id}"',
        f'bind = "{DEFAULT_BIND}"  # "0.0.0.0" publishes the ports on the LAN',
        f'hf_cache = "{DEFAULT_HF_CACHE}"  # mounted as the containers\' Hugging Face cache',
        "",
        *changed,
        f"[services.{VLLM_SERVICE.name}]",
        'engine = "vllm"',
        f'model = "{model}"',
        f'quant = "{quant}"  # {VARIANT_WHY[variant] if quant == VARIANTS[variant][1] else "what fits"}',
        f"port = {VLLM_SERVICE.port}",
        'gpus = "all"',
        'env = { HF_TOKEN = "${HF_TOKEN}" }  # from .env; gated models need it',
        "",
        f"[services.{VLLM_SERVICE.name}.args]",
        f"# {util:.2f} x {hw.gpu_memory_gib:.1f} GiB = {vmem.budget_gib:.1f} GiB for vLLM, "
        f"leaving {left:.1f} GiB for {room}"
        f" (Ollama needs {omem.total_gib:.1f} GiB{f', the OS {hw.os_reserve_gib:.0f} GiB' if hw.unified else ''}).",
        f"gpu_memory_utilization = {util:.2f}",
        f"max_model_len = {vmem.max_model_len}",
        f"max_num_batched_tokens = {vset.max_num_batched_tokens}  # prefill chunk per step",
        f"# The KV cache holds {vmem.kv_tokens:,} tokens = {vmem.max_concurrency:.1f} requests "
        f"at the full {vmem.max_model_len:,};"
        f" most are shorter, so {SEQS_OVER_FULL_LENGTH}x that",
        "# (a power of two) keeps the batch full while preemptions stay rare.",
        f"max_num_seqs = {vset.max_num_seqs}",
        *parallel,
        "enable_prefix_caching = true  # reuse the KV of shared prompt prefixes (system prompts, chat history)",
        "enable_chunked_prefill = true  # long prompts no longer stall running decodes",
        "",
        f"[services.{OLLAMA_SERVICE.name}]",
        'engine = "ollama"',
        f'model = "{OLLAMA_SERVICE.model}"  # the resident model the plan reserves room for; `up` pulls it',
        f"port = {OLLAMA_SERVICE.port}",
        'gpus = "all"',
        f'volumes = ["{OLLAMA_MODELS_HOST}:/root/.ollama"]',
        "",
        f"[services.{OLLAMA_SERVICE.name}.args]",
        f"num_ctx = {oset.num_ctx}",
        f"num_parallel = {oset.num_parallel}",
        "",
        f"[services.{OLLAMA_SERVICE.name}.env]",
        f'OLLAMA_KEEP_ALIVE = "{OLLAMA_KEEP_ALIVE}"  # keep the model loaded between requests',
        "",
    ]
    return "\n".join(lines)


def write_default_stack(path: Path, hw: HardwareProfile, variant: str | None = None, force: bool = False) -> StackPlan:
    """Write the default stack to `path`. An existing file stays, and a stack that does not fit is not
    written, unless `force`."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    variant = variant or default_variant(hw)
    text = default_stack_text(hw, variant)
    from sparkserve.stack.load import Stack, parse_stack
    from sparkserve.stack.stackplan import plan_stack

    written = plan_stack(Stack(path=path, spec=parse_stack(text, str(path))), hw)
    rec = plan_default_stack(hw, variant).services[0].recommendation
    more_gpus = [n for n in (rec.notes if rec else []) if n.startswith("--gpus ")]
    if (more_gpus or not written.fits) and not force:
        why = (
            more_gpus[0]
            if more_gpus
            else next((w for s in written.services for w in s.memory.reasons), None) or written.warnings()[0]
        )
        raise UserError(
            f"the default stack ({variant}) does not fit one {hw.name}: {why}; "
            "try another --variant or --hardware, or pass --force to write it anyway"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the stack file ({exc.strerror or exc})") from None
    return written

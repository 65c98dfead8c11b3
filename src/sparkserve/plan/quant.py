"""Weight and KV-cache formats: bytes per parameter, what stays 16 bit, what the hardware runs natively."""

from __future__ import annotations

from dataclasses import dataclass

from sparkserve.errors import unknown
from sparkserve.hardware.profile import HardwareProfile


@dataclass(frozen=True)
class WeightFormat:
    id: str
    bits: float  # bits per parameter, scales and zero points included
    compute: str  # dtype the matmuls run in when the hardware supports it natively
    family: str  # "float", "int", "gguf"
    needs: str | None = None  # the native support it relies on: "fp8", "nvfp4", "mxfp4"
    description: str = ""


# Bits include block scales: AWQ/GPTQ keep an fp16 scale and a 4-bit zero per group of 128
# (4 + 16/128 + 4/128; AutoAWQ / GPTQ default group_size=128). NVFP4: one FP8 scale per 16
# values (4 + 8/16; NVIDIA "Introducing NVFP4", 2025). MXFP4: one E8M0 scale per 32 values
# (4 + 8/32; OCP Microscaling spec v1.0). GGUF block types: Q8_0 34 bytes/32 weights, Q4_0
# 18 bytes/32 (ggml-common.h block_q8_0/block_q4_0); K-quant mixes as measured on Llama 2 7B
# in llama.cpp tools/quantize/README.md (Q4_K_M 4.84, Q5_K_M 5.68, Q6_K 6.56 bpw).
WEIGHT_FORMATS: dict[str, WeightFormat] = {
    f.id: f
    for f in (
        WeightFormat("fp32", 32, "bf16", "float", description="32-bit float (--dtype float32)"),
        WeightFormat("bf16", 16, "bf16", "float", description="16-bit brain float (checkpoint default)"),
        WeightFormat("fp16", 16, "bf16", "float", description="16-bit float"),
        WeightFormat("fp8", 8, "fp8", "float", needs="fp8", description="FP8 E4M3 weights and activations"),
        WeightFormat("int8", 8, "int8", "int", description="INT8 W8A8 (SmoothQuant / compressed-tensors)"),
        WeightFormat("awq", 4 + 16 / 128 + 4 / 128, "bf16", "int", description="AWQ 4-bit, group 128"),
        WeightFormat("gptq", 4 + 16 / 128 + 4 / 128, "bf16", "int", description="GPTQ 4-bit, group 128"),
        WeightFormat("nvfp4", 4 + 8 / 16, "fp4", "float", needs="nvfp4", description="NVFP4, FP8 scale per 16"),
        WeightFormat("mxfp4", 4 + 8 / 32, "fp8", "float", needs="mxfp4", description="MXFP4, E8M0 scale per 32"),
        WeightFormat("q8_0", 8.5, "int8", "gguf", description="GGUF Q8_0"),
        WeightFormat("q6_k", 6.56, "int8", "gguf", description="GGUF Q6_K"),
        WeightFormat("q5_k_m", 5.68, "int8", "gguf", description="GGUF Q5_K_M mix"),
        WeightFormat("q4_k_m", 4.84, "int8", "gguf", description="GGUF Q4_K_M mix"),
        WeightFormat("q4_0", 4.5, "int8", "gguf", description="GGUF Q4_0"),
    )
}

# KV-cache element sizes. vLLM: "auto" takes the model dtype, fp8 (e4m3/e5m2) is 1 byte.
# llama.cpp / Ollama OLLAMA_KV_CACHE_TYPE: f16, q8_0 (34 B/32), q4_0 (18 B/32).
KV_DTYPE_BYTES: dict[str, float] = {
    "auto": 2.0,
    "fp32": 4.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp16": 2.0,
    "f16": 2.0,
    "fp8": 1.0,
    "fp8_e4m3": 1.0,
    "fp8_e5m2": 1.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
}

class _EnginesWhere:
    """The registered engines that load GGUF files (or, with gguf=False, Hugging Face checkpoints);
    `engine in GGUF_ENGINES` asks the engine registry, so an added engine needs no edit here."""

    def __init__(self, gguf: bool) -> None:
        self.gguf = gguf

    def __contains__(self, name: object) -> bool:
        from sparkserve.engines import find_engine

        found = find_engine(name) if isinstance(name, str) else None
        return found is not None and found.gguf == self.gguf


GGUF_ENGINES = _EnginesWhere(gguf=True)
VLLM_LIKE_ENGINES = _EnginesWhere(gguf=False)


def weight_format(name: str) -> WeightFormat:
    key = name.strip().lower().replace("-", "_")
    key = {"float16": "fp16", "bfloat16": "bf16", "f16": "fp16", "float32": "fp32", "f32": "fp32",
           "w8a8": "int8"}.get(key, key)
    if key == "fp4":
        from sparkserve.errors import UserError

        raise UserError("quantisation 'fp4' is ambiguous: use nvfp4 (NVIDIA FP4, FP8 scale per 16 weights) "
                        "or mxfp4 (OCP microscaling FP4, E8M0 scale per 32)")
    if key not in WEIGHT_FORMATS:
        raise unknown("quantisation", name, WEIGHT_FORMATS, hint="expected one of " + ", ".join(WEIGHT_FORMATS))
    return WEIGHT_FORMATS[key]


def kv_dtype_bytes(name: str) -> float:
    key = name.strip().lower()
    if key not in KV_DTYPE_BYTES:
        raise unknown("KV-cache dtype", name, KV_DTYPE_BYTES, hint="expected auto or fp8")
    return KV_DTYPE_BYTES[key]


def check_engine_format(engine: str, fmt: WeightFormat) -> None:
    """GGUF types are llama.cpp's; vLLM-family engines take HF checkpoints (and the reverse)."""
    from sparkserve.errors import UserError

    if engine in GGUF_ENGINES and fmt.family != "gguf" and fmt.id not in ("mxfp4", "bf16", "fp16", "fp32"):
        raise UserError(
            f"quantisation {fmt.id!r} is not a GGUF type that {engine} loads; "
            "use q4_k_m, q5_k_m, q6_k, q8_0, q4_0 or bf16"
        )
    if engine in VLLM_LIKE_ENGINES and fmt.family == "gguf":
        raise UserError(
            f"quantisation {fmt.id!r} is a GGUF type; {engine} serves HF checkpoints: "
            "use bf16, fp8, awq, gptq, nvfp4 or mxfp4"
        )


def hardware_warnings(fmt: WeightFormat, hw: HardwareProfile) -> list[str]:
    """What runs through a slower emulation path on this hardware."""
    support = {"fp8": hw.native_fp8, "nvfp4": hw.native_nvfp4, "mxfp4": hw.native_mxfp4}
    if fmt.needs and not support[fmt.needs]:
        fallback = {
            "fp8": "weight-only FP8 (Marlin), matmuls in BF16",
            "nvfp4": "weight-only FP4 emulation, matmuls in BF16",
            "mxfp4": "weight-only MXFP4 kernels, matmuls in BF16",
        }[fmt.needs]
        return [
            f"{hw.name} has no native {fmt.needs.upper()}: {fmt.id} runs as {fallback} (slower prefill, same memory)"
        ]
    return []


def compute_dtype(fmt: WeightFormat, hw: HardwareProfile, engine: str, marlin: bool = False) -> str:
    """The dtype prefill matmuls run in: native low precision only where hardware and engine have it.
    Marlin kernels (vLLM's --linear-backend / --moe-backend marlin) dequantise the weights to 16 bit in
    registers and multiply in BF16 (W4A16, W8A16) whatever the hardware has."""
    if engine in GGUF_ENGINES or marlin:
        # llama.cpp dequantises blocks into 16-bit tiles (or int8 MMQ tiles) per micro-batch; its
        # calibrated compute share is taken against the 16-bit rate.
        return "bf16"
    if fmt.needs and not {"fp8": hw.native_fp8, "nvfp4": hw.native_nvfp4, "mxfp4": hw.native_mxfp4}[fmt.needs]:
        return "bf16"
    if fmt.compute == "fp8" and not hw.native_fp8:
        return "bf16"
    return fmt.compute

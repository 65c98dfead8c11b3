"""Engines sparkserve plans but does not run: SGLang, TensorRT-LLM and llama.cpp.

Each declares its own flags and memory knowledge; asking to render, start or probe one raises
`PlanningOnly` (engines/base.py) instead of borrowing vLLM's or Ollama's behaviour.
"""

from __future__ import annotations

from typing import Any

from sparkserve.engines.base import Engine
from sparkserve.engines.registry import register

PLANNING_ONLY = "planning only: sparkserve sizes {label} but does not render, start or benchmark it"


class StaticPoolEngine(Engine):
    """An engine that takes a fixed share of each GPU at start for weights, activations and a KV pool.

    The planner sizes it with the same profile arithmetic as vLLM's (plan/memory.py `vllm_memory`):
    weights, the activation peak of one prefill chunk and the KV pool inside `share x device memory`.
    """

    takes_memory_share = True
    kv_cache_dtypes: tuple[str, ...] = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
    share_flag = ""
    default_share = 0.90  # round value; the engines pick theirs by GPU size

    def memory(self, dep: Any) -> Any:
        import dataclasses

        from sparkserve.plan.memory import vllm_memory

        if dep.gpu_memory_utilization is None:
            dep = dataclasses.replace(dep, gpu_memory_utilization=self.default_share)
        mem = vllm_memory(dep)
        mem.warnings.insert(0, PLANNING_ONLY.format(label=self.label))
        return mem

    def unified_memory_warnings(self, dep: Any, mem: Any) -> list[str]:
        hw = dep.hardware
        share = mem.settings.gpu_memory_utilization
        left = hw.gpu_memory_gib * (1 - share)
        if not hw.unified or left >= hw.os_reserve_gib:
            return []
        import math

        fix = math.floor((hw.gpu_memory_gib - hw.os_reserve_gib) / hw.gpu_memory_gib * 100) / 100
        return [f"unified memory: {self.label} takes {share:.2f} x {hw.gpu_memory_gib:.1f} GiB and leaves "
                f"{left:.1f} GiB for the OS (needs about {hw.os_reserve_gib:.0f} GiB); the host may freeze. "
                f"Use {self.share_flag} {fix:.2f}"]

    def memory_at_start_gib(self, mem: Any) -> float:
        return float(mem.budget_gib)

    def admission_gate(self, version: str | None) -> str | None:
        """Both reserve a request's prompt and its output before admitting it: SGLang's scheduler counts the
        prompt plus max_new_tokens x new_token_ratio against the free pool (PrefillAdder), TensorRT-LLM's default
        GUARANTEED_NO_EVICT policy the prompt plus max_tokens."""
        return "request"


class SGLang(StaticPoolEngine):
    name = "sglang"
    label = "SGLang"
    share_flag = "--mem-fraction-static"
    paste_prefix = ("python", "-m", "sglang.launch_server")

    def expert_padding(self, model: Any, quant: str, hw: Any) -> float:
        """SGLang's MXFP4 MoE rounds only the expert width, to a multiple of 64, on CUDA unless FlashInfer's MXFP4
        kernel is switched on (sgl-project/sglang python/sglang/srt/layers/quantization/mxfp4.py,
        Mxfp4MoEMethod.create_weights at 0043c43): gpt-oss's 2880 stays 2880."""
        width = model.moe_intermediate_size
        if quant != "mxfp4" or not model.is_moe or not width:
            return 1.0
        return float(-(-width // 64) * 64 / width)

    def recommended_args(self, plan: Any) -> list[str]:
        """`python -m sglang.launch_server` arguments (SGLang server_args.py names)."""
        dep, mem = plan.deployment, plan.memory
        args = ["--model-path", dep.model.id, "--mem-fraction-static", f"{mem.settings.gpu_memory_utilization:.2f}",
                "--context-length", str(mem.max_model_len), "--max-running-requests", str(mem.settings.max_num_seqs)]
        if dep.devices > 1:
            args += ["--tp-size", str(dep.devices)]
        if mem.settings.kv_cache_dtype != "auto":
            args += ["--kv-cache-dtype", mem.settings.kv_cache_dtype]
        return args


class TensorRTLLM(StaticPoolEngine):
    name = "trtllm"
    label = "TensorRT-LLM"
    aliases = ("tensorrt-llm", "trt-llm", "tensorrt_llm")
    share_flag = "--kv_cache_free_gpu_memory_fraction"
    paste_prefix = ("trtllm-serve",)

    def recommended_args(self, plan: Any) -> list[str]:
        """`trtllm-serve` arguments."""
        dep, mem = plan.deployment, plan.memory
        args = [dep.model.id, "--max_seq_len", str(mem.max_model_len),
                "--max_batch_size", str(mem.settings.max_num_seqs),
                "--max_num_tokens", str(mem.settings.max_num_batched_tokens)]
        if dep.devices > 1:
            args += ["--tp_size", str(dep.devices)]
        return args


class LlamaCpp(Engine):
    """llama.cpp's server: GGUF weights, a context per slot, compute buffers for one micro-batch."""

    name = "llama.cpp"
    label = "llama.cpp"
    aliases = ("llamacpp", "llama-cpp")
    gguf = True
    kv_cache_dtypes = ("auto", "f16", "q8_0", "q4_0")  # --cache-type-k/-v
    paste_prefix = ("llama-server",)

    def memory(self, dep: Any) -> Any:
        from sparkserve.plan.memory import ollama_memory

        mem = ollama_memory(dep)
        mem.warnings.insert(0, PLANNING_ONLY.format(label=self.label))
        return mem

    def default_quant(self, checkpoint_quant: str | None) -> str:
        return "mxfp4" if checkpoint_quant == "mxfp4" else "q4_k_m"

    def recommended_args(self, plan: Any) -> list[str]:
        """`llama-server` arguments: all layers on the GPU, the context shared by the parallel slots."""
        mem = plan.memory
        parallel = mem.settings.num_parallel
        args = ["-c", str(mem.settings.num_ctx * parallel), "-np", str(parallel), "-ngl", "999"]
        if mem.settings.kv_cache_type != "f16":
            args += ["--cache-type-k", mem.settings.kv_cache_type, "--cache-type-v", mem.settings.kv_cache_type]
        return args


for _engine in (SGLang(), TensorRTLLM(), LlamaCpp()):
    register(_engine)

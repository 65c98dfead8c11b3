"""A test engine, "toy", defined and registered from the tests: nothing in sparkserve names it.

It owns everything sparkserve asks an engine through `Engine` (engines/base.py): a memory model,
its arguments, image and compose fragment, native command, health path, metric names, bench API.
Its server is tests/toy_server.py: a real HTTP process speaking the OpenAI API on 127.0.0.1.
Importing this module registers the engine; the CLI imports it through $SPARKSERVE_ENGINE_MODULES.
"""

from __future__ import annotations

from typing import Any

from sparkserve.engines import ComposeFragment, NativeCommand, register
from sparkserve.engines.openai import OpenAICompatible
from sparkserve.plan.calibration import Efficiency

NAME = "toy"
SLOTS = 4  # requests the toy server serves at once
DEFAULT_MAX_LEN = 4096
OVERHEAD_GIB = 1.0  # the toy's fixed allocation besides weights and KV cache
IMAGE = "example.invalid/toy-server:1"
# Its own metric names (the server writes them): nothing of vLLM's.
METRIC_ALIASES = {
    "num_requests_running": ["toy:running"],
    "generation_tokens_total": ["toy:generated_tokens_total"],
    "prompt_tokens_total": ["toy:prompt_tokens_total"],
    "kv_cache_usage_perc": ["toy:kv_used_perc"],
}


class Toy(OpenAICompatible):
    name = NAME
    label = "Toy"
    runnable = True
    order = 50
    planner_args = {"max_model_len": int}
    kv_cache_dtypes = ("auto",)
    container_port = 7000
    health_path = "/healthz"
    metrics_path = "/metrics"
    metric_aliases = METRIC_ALIASES
    executable = "toy-serve"
    executable_env = "SPARKSERVE_TOY"
    start_period = "30s"
    # Made-up speed numbers: the toy is not calibrated against anything.
    efficiency = Efficiency(bandwidth=0.5, step_overhead_ms=5.0, compute=0.2, gemm_half_rows=32,
                            request_overhead_ms=10, prefill_chunk=1024)

    def memory(self, dep: Any) -> Any:
        """Weights, a KV cache for SLOTS requests of max-model-len, and a fixed overhead."""
        from sparkserve.plan.memory import GIB, MemoryPlan, kv_bytes_per_token_device, weight_bytes
        from sparkserve.plan.settings import VllmSettings

        hw, model = dep.hardware, dep.model
        max_len = dep.max_model_len or DEFAULT_MAX_LEN
        weights = weight_bytes(model, dep.quant, dep.engine)
        per_token = kv_bytes_per_token_device(model, "auto", 1)
        kv = per_token * max_len * SLOTS
        total = weights + kv + OVERHEAD_GIB * GIB
        share = min(1.0, round(total / (hw.gpu_memory_gib * GIB) + 0.005, 2))
        plan = MemoryPlan(
            engine=dep.engine, devices=1, device_memory_gib=hw.gpu_memory_gib, budget_gib=total / GIB,
            weights_gib=weights / GIB, activation_gib=OVERHEAD_GIB, non_torch_gib=0.0, cuda_graph_gib=0.0,
            kv_cache_gib=kv / GIB, kv_tokens=max_len * SLOTS, kv_bytes_per_token=per_token, max_model_len=max_len,
            max_concurrency=float(SLOTS), total_gib=total / GIB,
            settings=VllmSettings(gpu_memory_utilization=share, max_model_len=max_len,
                                  max_num_batched_tokens=max_len, max_num_seqs=SLOTS),
        )
        if total / GIB > hw.gpu_memory_gib:
            plan.fits = False
            plan.reasons.append(f"the toy needs {total / GIB:.1f} GiB but {hw.name} has {hw.gpu_memory_gib:.0f} GiB")
        return plan

    def recommended_args(self, plan: Any) -> list[str]:
        return ["--model", plan.deployment.model.id, "--max-model-len", str(plan.memory.max_model_len),
                "--slots", str(SLOTS)]

    def image_for(self, hw: Any) -> str:
        return IMAGE

    def healthcheck_test(self) -> list[str]:
        return ["CMD", "toy-serve", "--check"]

    def compose_fragment(self, svc: Any, plan: Any, hw: Any, hf_cache: str) -> ComposeFragment:
        return ComposeFragment(image=svc.image or IMAGE,
                               command=[*plan.recommended_args, "--port", str(self.container_port)],
                               environment=dict(svc.env), volumes=[f"{hf_cache}:/models"])

    def native_command(self, svc: Any, plan: Any, *, bind: str, hf_cache: str | None, stack_dir: str) -> NativeCommand:
        return NativeCommand(args=[*plan.recommended_args, "--served-name", self.served_name(svc.model, svc.args),
                                   "--host", bind, "--port", str(svc.port)],
                             env={"TOY_STATE_DIR": stack_dir})


ENGINE = register(Toy())

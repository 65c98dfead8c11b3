"""Memory model: hand-worked examples against vLLM / Ollama accounting, and invariants.

Every expected number below is derived by hand (arithmetic in the comments, with the fitted
constants read from plan/calibration.json), never copied from the planner's output and never a
public measurement: how close plans come to vLLM's start-up logs is measured, on logs the
constants were not fitted on, by benchmarks/plan_accuracy.py (docs/accuracy.md).
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from sparkserve.hardware.catalog import get_profile, list_profiles
from sparkserve.models.catalog import list_models, resolve_model
from sparkserve.plan.calibration import vllm_memory_constants
from sparkserve.plan.memory import engine_memory
from sparkserve.plan.planner import deployment, plan_service
from sparkserve.plan.speed import Workload
from sparkserve.stack.planning import plan_default_stack

GIB = 1024**3
LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"
H100_GIB = 79.18  # torch total on an H100 80GB, as vLLM logs it
SPARK_GIB = 121.6


def spec(name: str):
    return resolve_model(name).spec


def mem(hw: str, model: str, quant: str, engine: str = "vllm", **settings):
    return engine_memory(deployment(get_profile(hw), spec(model), quant, engine, **settings))


# ---------------------------------------------------------------------------------------------
# Llama-3.1-8B bf16 on one H100, utilisation 0.95, vLLM 0.19

def llama8_plan(**kw):
    settings = dict(gpu_memory_utilization=0.95, engine_version="0.19.0", max_model_len=8192)
    settings.update(kw)
    return mem("h100-sxm", LLAMA8, "bf16", **settings)


def test_llama8b_param_count_by_hand() -> None:
    # embedding 128,256 x 4,096 = 525,336,576, untied lm_head the same     -> 1,050,673,152
    # attention per layer: q 4096x4096 + k,v 2 x 4096x1024 + o 4096x4096 = 41,943,040; x32 -> 1,342,177,280
    # MLP per layer: 3 x 4096 x 14336 = 176,160,768; x32                    -> 5,637,144,576
    # RMSNorms: 32 x 2 x 4096 + final 4096                                  ->       266,240
    # total                                                                  -> 8,030,261,248 (card: 8.03 B)
    assert spec(LLAMA8).params.total == 8_030_261_248


def test_llama8b_weights_are_two_bytes_per_param() -> None:
    plan = llama8_plan()
    hand = spec(LLAMA8).params.total * 2 / GIB  # 8,030,261,248 x 2 B = 14.9575 GiB
    assert plan.weights_gib == pytest.approx(hand, rel=1e-9)


def test_llama8b_kv_cache_by_hand_vllm_019() -> None:
    plan = llama8_plan()
    budget = 0.95 * H100_GIB * GIB  # 75.221 GiB
    weights = 8_030_261_248 * 2
    c = vllm_memory_constants()  # fitted by benchmarks/fit_calibration.py
    # Profiling peak: max(forward of 8,192 tokens, sampler over min(1,024 seqs, 8,192) rows) + base.
    # forward: 8192 x 2 B x (2 x 4096 + max(attn 4096+2x1024+4096 = 10,240, MLP 3 x 14,336 = 43,008))
    forward = 8192 * 2 * (2 * 4096 + 43_008)  # 838,860,800 B
    sampler = 1024 * 128_256 * c.sampler_bytes_per_logit
    activation = c.profile_base_gib * GIB + max(forward, sampler)
    assert plan.activation_gib == pytest.approx(activation / GIB, rel=1e-9)
    non_torch = c.non_torch_gib_single * GIB  # one GPU: cuBLAS workspaces only
    assert plan.non_torch_gib == pytest.approx(c.non_torch_gib_single)

    # vLLM 0.19 does not subtract its CUDA-graph estimate from the budget.
    kv_bytes = budget - weights - activation - non_torch
    assert plan.kv_cache_gib == pytest.approx(kv_bytes / GIB, rel=1e-9)

    # One token: K and V x 8 KV heads x 128 dims x 32 layers x 2 bytes = 131,072 B; blocks of 16 tokens.
    assert plan.kv_bytes_per_token == 2 * 8 * 128 * 32 * 2 == 131_072
    assert plan.kv_tokens == math.floor(kv_bytes / (16 * 131_072)) * 16
    # No sliding window: every request of max_model_len tokens takes max_model_len / 16 blocks.
    assert plan.max_concurrency == pytest.approx(plan.kv_tokens / 8192, rel=1e-9)
    assert plan.fits and not plan.reasons


def test_cuda_graphs_come_off_the_budget_from_vllm_021() -> None:
    old, current, v021 = llama8_plan(), llama8_plan(engine_version=None), llama8_plan(engine_version="0.21.0")
    c = vllm_memory_constants()
    graphs = (c.cuda_graph_base_gib + c.cuda_graph_per_layer_gib * 32) * GIB  # 32 layers, one GPU
    assert old.cuda_graph_gib == pytest.approx(graphs / GIB)
    assert old.cuda_graph_gib > 0
    assert old.kv_cache_gib - current.kv_cache_gib == pytest.approx(current.cuda_graph_gib, abs=1e-9)
    assert v021.kv_cache_gib == pytest.approx(current.kv_cache_gib, abs=1e-9)
    assert current.kv_tokens < old.kv_tokens
    # 0.19 holds the graphs on top of its budget; current vLLM keeps everything inside it.
    assert old.total_gib == pytest.approx(old.budget_gib + old.cuda_graph_gib)
    assert current.total_gib == pytest.approx(current.budget_gib)


def test_releases_before_021_default_to_a_90_percent_budget() -> None:
    """vllm#38284 raised --gpu-memory-utilization's default from 0.90 to 0.92 with the graph estimate (v0.21)."""
    h100 = get_profile("h100-sxm")
    old = mem("h100-sxm", LLAMA8, "bf16", engine_version="0.11.0", max_model_len=8192)
    current = mem("h100-sxm", LLAMA8, "bf16", max_model_len=8192)
    assert old.settings.gpu_memory_utilization == 0.90 and current.settings.gpu_memory_utilization == 0.92
    assert old.budget_gib == pytest.approx(0.90 * h100.gpu_memory_gib)
    stated = mem("h100-sxm", LLAMA8, "bf16", engine_version="0.11.0", max_model_len=8192, gpu_memory_utilization=0.95)
    assert stated.budget_gib == pytest.approx(0.95 * h100.gpu_memory_gib)  # a stated share wins over the default


def test_enforce_eager_removes_cuda_graphs() -> None:
    graphs = llama8_plan(engine_version=None)
    eager = llama8_plan(engine_version=None, enforce_eager=True)
    assert eager.cuda_graph_gib == 0
    assert eager.kv_cache_gib - graphs.kv_cache_gib == pytest.approx(graphs.cuda_graph_gib, abs=1e-9)
    assert eager.kv_tokens > graphs.kv_tokens
    plan = plan_service(
        deployment(get_profile("h100-sxm"), spec(LLAMA8), "bf16", "vllm", enforce_eager=True), Workload()
    )
    assert "--enforce-eager" in plan.recommended_args


def test_fp8_kv_cache_doubles_tokens_within_one_block() -> None:
    auto, fp8 = llama8_plan(), llama8_plan(kv_cache_dtype="fp8")
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.kv_cache_gib == pytest.approx(auto.kv_cache_gib)  # same bytes, half the size per token
    # floor(2x / 16) x 16 is 2 x floor(x / 16) x 16 or one block more
    assert 0 <= fp8.kv_tokens - 2 * auto.kv_tokens <= 16


# ---------------------------------------------------------------------------------------------
# Tensor parallelism


def test_tp4_weights_per_gpu_are_a_quarter() -> None:
    # Llama-3.3-70B FP8 on 4 x H100, 0.95, vLLM 0.19.
    model = spec("meta-llama/Llama-3.3-70B-Instruct")
    p = model.params
    # FP8 checkpoints quantise the linear layers to 1 byte; embeddings, lm_head and norms stay 2 bytes.
    hand_total = (p.attention + p.dense_mlp) * 1 + (p.embedding + p.lm_head + p.other) * 2
    tp1 = mem("h100-sxm", model.id, "fp8", gpu_memory_utilization=0.95, engine_version="0.19.0", max_model_len=8192)
    tp4 = mem("h100-sxm", model.id, "fp8", gpus=4, gpu_memory_utilization=0.95, engine_version="0.19.0",
              max_model_len=8192)
    assert tp1.weights_gib == pytest.approx(hand_total / GIB, rel=1e-9)
    assert tp4.weights_gib / 4 == pytest.approx(hand_total / 4 / GIB, rel=1e-9)
    assert tp4.budget_gib == pytest.approx(4 * 0.95 * H100_GIB)
    # Per GPU: budget - quarter of the weights - activation - non-torch (graphs outside on 0.19).
    per_gpu_kv = 0.95 * H100_GIB - (tp4.weights_gib + tp4.activation_gib + tp4.non_torch_gib) / 4
    assert tp4.kv_cache_gib / 4 == pytest.approx(per_gpu_kv, rel=1e-9)
    assert tp4.fits
    # The quarter of the weights (and a larger non-torch share) is what separates one GPU from four.
    assert tp4.kv_cache_gib / 4 > tp1.kv_cache_gib


def test_kv_heads_replicate_when_tp_exceeds_kv_heads() -> None:
    # Qwen3-30B-A3B: 4 KV heads x 128 dims x 48 layers; per token K+V in bf16: 2 x 4 x 128 x 48 x 2 = 98,304 B.
    model = spec("Qwen/Qwen3-30B-A3B")
    assert (model.num_kv_heads, model.head_dim, model.num_layers) == (4, 128, 48)
    per_token = {tp: mem("h100-sxm", model.id, "bf16", gpus=tp).kv_bytes_per_token for tp in (1, 2, 4, 8)}
    assert per_token[1] == per_token[2] == per_token[4] == 98_304  # heads split, total unchanged
    assert per_token[8] == 2 * 98_304  # 8 ranks, 4 heads: each rank keeps one whole head (replicated)


# ---------------------------------------------------------------------------------------------
# Activation peak


def test_activation_grows_with_batched_tokens_not_max_model_len() -> None:
    acts = [llama8_plan(max_num_batched_tokens=n).activation_gib for n in (2048, 8192, 16384, 32768, 65536)]
    assert acts == sorted(acts)
    assert acts[-1] > acts[0]
    # 65,536 tokens: forward 65536 x 2 x (8192 + 43008) = 6,710,886,400 B = 6.25 GiB > the sampler's
    # 1,024 x 128,256 logits (under 2 GiB at any plausible bytes per logit)
    assert acts[-1] == pytest.approx(vllm_memory_constants().profile_base_gib + 6.25, rel=1e-9)
    by_len = {llama8_plan(max_model_len=n).activation_gib for n in (4096, 32768, 131072)}
    assert len(by_len) == 1


# ---------------------------------------------------------------------------------------------
# Not fitting


def test_kv_smaller_than_max_model_len_explains_and_suggests() -> None:
    # Qwen3-32B bf16 (61 GiB) on one H100 at the default 0.92 and its native 40,960-token context.
    d = deployment(get_profile("h100-sxm"), spec("Qwen/Qwen3-32B"), "bf16", "vllm")
    plan = engine_memory(d)
    assert plan.max_model_len == 40_960
    assert 0 < plan.kv_tokens < 40_960
    assert not plan.fits
    reason = " ".join(plan.reasons)
    assert f"{plan.kv_tokens:,}" in reason and "40,960" in reason
    _check_suggestions(d, plan)


def _check_suggestions(d, plan) -> int:
    """Re-plan with each suggestion in the reasons: each must fit. Returns how many were checked."""
    checked = 0
    for reason in plan.reasons:
        length = re.search(r"--max-model-len to ([\d,]+)", reason)
        util = re.search(r"--gpu-memory-utilization to ([\d.]+)", reason)
        if length:
            n = int(length.group(1).replace(",", ""))
            assert 0 < n < plan.max_model_len, reason
            again = engine_memory(dataclasses.replace(d, max_model_len=n))
            assert again.fits, (d.model.id, d.hardware.id, reason, again.reasons)
            checked += 1
        if util:
            u = float(util.group(1))
            assert u <= 1.0, reason
            again = engine_memory(dataclasses.replace(d, gpu_memory_utilization=u))
            assert again.fits, (d.model.id, d.hardware.id, reason, again.reasons)
            checked += 1
    return checked


def test_every_suggestion_in_the_catalog_fits_when_replanned() -> None:
    """Over every profile x bundled model x a few formats, GPU counts and contexts."""
    checked = 0
    for hw in list_profiles():
        for model_id in list_models():
            model = spec(model_id)
            for quant in ("bf16", "fp8", "awq"):
                for gpus in sorted({1, 2, hw.max_gpus}):
                    if gpus > hw.max_gpus:
                        continue
                    for length in (None, 131_072):
                        d = deployment(hw, model, quant, "vllm", gpus=gpus, max_model_len=length)
                        plan = engine_memory(d)
                        if plan.max_concurrency < 1 and plan.kv_tokens > 0:
                            assert not plan.fits
                        checked += _check_suggestions(d, plan)
    assert checked > 50  # the sweep really exercises the suggestion path


def test_weights_above_budget_do_not_fit_and_do_not_raise() -> None:
    # Qwen3-235B-A22B in bf16 is ~470 GB; a Spark has 121.6 GiB.
    d = deployment(get_profile("dgx-spark"), spec("Qwen/Qwen3-235B-A22B"), "bf16", "vllm")
    plan = engine_memory(d)
    assert not plan.fits
    assert plan.weights_gib > plan.budget_gib
    assert plan.kv_tokens == 0 and plan.max_concurrency == 0
    assert any("weights" in r for r in plan.reasons)
    service = plan_service(d, Workload())
    assert not service.fits
    assert any("weights" in w for w in service.warnings)


# ---------------------------------------------------------------------------------------------
# Hybrid (sliding-window) layout and MXFP4 padding


def test_gemma3_27b_hybrid_kv_layout() -> None:
    # gemma-3-27b: 62 layers, every 6th global -> 10 full-attention and 52 sliding layers.
    # vLLM groups layers in equal groups of min(10, 52) = 10: 1 full group + ceil(52/10) = 6 sliding
    # groups = 7 groups = 70 layer slots, each token of a request taking one slot per group.
    model = spec("google/gemma-3-27b-it")
    assert (model.num_layers, model.full_attention_layers, model.sliding_window_layers) == (62, 10, 52)
    plan = mem("h100-sxm", model.id, "bf16", gpu_memory_utilization=0.95, engine_version="0.19.0",
               max_model_len=8192)
    per_layer_token = 2 * model.num_kv_heads * model.head_dim * 2  # 2 x 16 x 128 x 2 = 8,192 B
    assert per_layer_token == 8192
    kv_bytes = plan.kv_cache_gib * GIB
    blocks = math.floor(kv_bytes / (16 * per_layer_token * 10))  # one block spans a group of 10 layers
    assert plan.kv_tokens == blocks * 16 // 7
    assert plan.kv_tokens == pytest.approx(kv_bytes / (70 * per_layer_token), rel=0.01)


def test_gpt_oss_mxfp4_weights_include_the_kernels_padding() -> None:
    model = spec("openai/gpt-oss-20b")
    p = model.params
    # experts: 24 layers x 32 experts x (gate_up 2880 x 5760 + 5760 bias + down 2880 x 2880 + 2880 bias)
    #        = 768 x 24,891,840 = 19,116,933,120 params in MXFP4 (4 + 8/32 = 4.25 bits)
    assert p.experts == 24 * 32 * (2880 * 2 * 2880 + 2 * 2880 + 2880 * 2880 + 2880)
    padding = (3072 * 3072) / (2880 * 2880)  # vLLM pads hidden and expert widths 2880 -> 3072
    experts = p.experts * 4.25 / 8 * padding
    rest = (p.total - p.experts) * 2  # attention, router, embeddings, lm_head and norms stay bf16
    hand = (experts + rest) / GIB
    tp1 = mem("h100-sxm", model.id, "mxfp4")
    tp2 = mem("h100-sxm", model.id, "mxfp4", gpus=2)
    assert tp1.weights_gib == pytest.approx(hand, rel=1e-6)
    assert tp2.weights_gib == pytest.approx(tp1.weights_gib, rel=1e-9)  # split over two GPUs, same total
    unpadded = (p.experts * 4.25 / 8 + rest) / GIB
    assert tp1.weights_gib > unpadded + 1.0  # the padding is about 1.3 GiB
    # Marlin (A100, the Spark) pads the hidden width to 256 and the expert width to 128 only: 2880 -> 3072, 2944
    marlin = (p.experts * 4.25 / 8 * (3072 * 2944) / (2880 * 2880) + rest) / GIB
    for hw in ("a100-80gb", "dgx-spark"):
        assert mem(hw, model.id, "mxfp4").weights_gib == pytest.approx(marlin, rel=1e-6)
    assert unpadded < marlin < tp1.weights_gib


def test_each_engine_pads_mxfp4_experts_as_its_own_kernel_does() -> None:
    from sparkserve.engines import get_engine

    model = spec("openai/gpt-oss-20b")
    vllm, sglang = get_engine("vllm"), get_engine("sglang")
    h100, spark = get_profile("h100-sxm"), get_profile("dgx-spark")
    assert vllm.expert_padding(model, "mxfp4", h100) == pytest.approx((3072 * 3072) / (2880 * 2880))
    assert vllm.expert_padding(model, "mxfp4", spark) == pytest.approx((3072 * 2944) / (2880 * 2880))
    assert vllm.expert_padding(model, "bf16", h100) == 1.0
    assert vllm.expert_padding(spec("Qwen/Qwen3-32B"), "mxfp4", h100) == 1.0  # dense: no experts to pad
    # SGLang rounds only the expert width, to 64, which gpt-oss's 2880 already is
    assert sglang.expert_padding(model, "mxfp4", h100) == 1.0
    odd = dataclasses.replace(model, moe_intermediate_size=2900)
    assert sglang.expert_padding(odd, "mxfp4", h100) == pytest.approx(2944 / 2900)
    unpadded = mem("h100-sxm", model.id, "mxfp4", engine="sglang", gpu_memory_utilization=0.9).weights_gib
    assert unpadded < mem("h100-sxm", model.id, "mxfp4").weights_gib


# ---------------------------------------------------------------------------------------------
# Ollama / llama.cpp


@pytest.mark.parametrize("engine", ["ollama", "llama.cpp"])
def test_ollama_kv_cache_exact(engine: str) -> None:
    model = spec("Qwen/Qwen3-8B")
    # Qwen3-8B: 36 layers, 8 KV heads, head_dim 128; f16 -> 2 x 8 x 128 x 36 x 2 = 147,456 B per token
    per_token = 2 * model.num_kv_heads * model.head_dim * model.num_layers * 2
    assert per_token == 147_456
    plan = mem("dgx-spark", model.id, "q4_k_m", engine, num_ctx=8192, num_parallel=2)
    assert plan.kv_cache_gib * GIB == pytest.approx(8192 * 2 * per_token, rel=1e-12)  # 2.25 GiB
    assert plan.kv_cache_gib == pytest.approx(2.25)
    assert plan.kv_tokens == 8192 * 2
    q8 = mem("dgx-spark", model.id, "q4_k_m", engine, num_ctx=8192, num_parallel=2, kv_cache_dtype="q8_0")
    # q8_0 stores 32 values in 34 bytes: 34/32 B per element against 2 B -> x 17/32
    assert q8.kv_cache_gib == pytest.approx(plan.kv_cache_gib * (34 / 32) / 2, rel=1e-12)


@pytest.mark.parametrize("model_id", ["Qwen/Qwen3-8B", "google/gemma-3-27b-it", "meta-llama/Llama-3.1-8B-Instruct"])
def test_ollama_q4_k_m_weights(model_id: str) -> None:
    p = spec(model_id).params
    sixteen_bit = p.other + p.vision  # norms and the vision tower stay 16 bit in the GGUF
    hand = ((p.total - sixteen_bit) * 4.84 / 8 + sixteen_bit * 2) / GIB
    plan = mem("dgx-spark", model_id, "q4_k_m", "ollama")
    assert plan.weights_gib == pytest.approx(hand, rel=1e-9)
    assert plan.total_gib == pytest.approx(plan.weights_gib + plan.kv_cache_gib + plan.activation_gib)


# ---------------------------------------------------------------------------------------------
# Unified memory and the default stack


def test_default_stack_on_spark_leaves_room_for_ollama_and_os() -> None:
    hw = get_profile("dgx-spark")
    stack = plan_default_stack(hw, Workload())
    vllm = next(s for s in stack.services if s.deployment.engine == "vllm")
    ollama = next(s for s in stack.services if s.deployment.engine == "ollama")
    util = vllm.memory.settings.gpu_memory_utilization
    assert util < 0.92
    # vLLM's share + Ollama's resident model + the OS reserve must fit in the 121.6 GiB pool
    assert util * SPARK_GIB + ollama.memory.total_gib + hw.os_reserve_gib <= SPARK_GIB
    assert stack.left_gib >= 0
    assert stack.fits
    assert all(s.fits for s in stack.services)


def test_default_stack_on_h100_leaves_room_for_ollama() -> None:
    stack = plan_default_stack(get_profile("h100-sxm"), Workload())
    vllm = next(s for s in stack.services if s.deployment.engine == "vllm")
    ollama = next(s for s in stack.services if s.deployment.engine == "ollama")
    util = vllm.memory.settings.gpu_memory_utilization
    assert util * H100_GIB + ollama.memory.total_gib <= H100_GIB
    assert vllm.memory.total_gib + ollama.memory.total_gib <= H100_GIB
    assert stack.left_gib >= 0


def test_vllm_alone_on_spark_warns_and_suggests_a_safe_utilisation() -> None:
    hw = get_profile("dgx-spark")
    plan = plan_service(deployment(hw, spec("Qwen/Qwen3-8B"), "bf16", "vllm"), Workload())
    # vLLM's default 0.92 leaves 121.6 x 0.08 = 9.7 GiB, under the 12 GiB the OS needs
    warning = next(w for w in plan.warnings if "unified memory" in w)
    util = float(re.search(r"--gpu-memory-utilization ([\d.]+)", warning).group(1))
    assert SPARK_GIB * (1 - util) >= hw.os_reserve_gib
    again = plan_service(deployment(hw, spec("Qwen/Qwen3-8B"), "bf16", "vllm", gpu_memory_utilization=util),
                         Workload())
    assert not any("unified memory" in w for w in again.warnings)

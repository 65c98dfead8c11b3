"""2026 architectures against hand-worked numbers: latent attention, linear-attention and Mamba hybrids."""

from __future__ import annotations

import math
import re

import pytest

from sparkserve.errors import UserError
from sparkserve.hardware.catalog import resolve_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.models.config import spec_from_config
from sparkserve.plan.memory import GIB, kv_layout, request_blocks, weight_bytes
from sparkserve.plan.planner import deployment, plan_service
from sparkserve.plan.quant import weight_format
from sparkserve.plan.speed import Workload, kv_bytes_per_context


def _plan(model: str, quant: str, engine: str = "vllm", **settings):
    hw = resolve_profile("h200")
    dep = deployment(hw, resolve_model(model).spec, quant, engine, **settings)
    return dep, plan_service(dep, Workload())


def test_deepseek_v3_counts_and_mtp_left_out_of_loaded_weights() -> None:
    spec = resolve_model("deepseek-ai/DeepSeek-V3").spec
    assert spec.is_mla and spec.kv_lora_rank == 512 and spec.qk_rope_head_dim == 64
    assert spec.params.total / 1e9 == pytest.approx(671, rel=0.005)  # model card: 671B main model
    assert spec.params.active / 1e9 == pytest.approx(37, rel=0.03)  # model card: 37B activated
    assert spec.params.mtp > 10e9 and spec.mtp_layers == 1
    assert spec.moe_layers == 58 and spec.num_shared_experts == 1  # first_k_dense_replace 3 of 61
    fmt = weight_format("bf16")
    assert weight_bytes(spec, fmt, "vllm") == pytest.approx(2 * spec.params.total)  # MTP not loaded


def test_mla_latent_kv_per_token() -> None:
    """One 576-element latent per token per layer, replicated (not split) on tensor-parallel ranks."""
    _, plan = _plan("deepseek-ai/DeepSeek-V3", "fp8", gpus=8)
    per_token_device = (512 + 64) * 2 * 61  # bf16 latent x 61 layers = 70,272 bytes
    assert plan.memory.kv_bytes_per_token == per_token_device * 8
    blocks = math.floor(plan.memory.kv_cache_gib * GIB / 8 / (16 * (512 + 64) * 2 * 61))
    assert plan.memory.kv_tokens == blocks * 16
    # a GQA model with the same 128 heads x 192 would need 2 x 128 x 192 / 8 ranks x 2 bytes per layer: 16x more
    assert 2 * 128 * 192 // 8 * 2 / ((512 + 64) * 2) > 10


def test_deepseek_v32_indexer_cache_and_sparse_reads() -> None:
    spec = resolve_model("deepseek-ai/DeepSeek-V3.2").spec
    assert spec.index_topk == 2048 and spec.index_head_dim == 128
    dep, plan = _plan("deepseek-ai/DeepSeek-V3.2", "fp8", gpus=8)
    assert plan.memory.kv_bytes_per_token == ((512 + 64) * 2 + 128 + 4) * 61 * 8
    # decoding at 100k context reads 2,048 latents per layer, not 100k
    assert kv_bytes_per_context(dep, 100_000) == kv_bytes_per_context(dep, 2048)


def test_qwen3_next_linear_attention_state_and_kv() -> None:
    spec = resolve_model("Qwen/Qwen3-Next-80B-A3B-Instruct").spec
    assert spec.params.total == 79_674_391_296  # safetensors total of the same shape (Qwen3-Coder-Next)
    assert spec.params.active == 3_874_929_408
    assert (spec.recurrent_layers, spec.full_attention_layers) == (36, 12)
    conv = (2 * 16 * 128 + 32 * 128) * (4 - 1)  # conv_dim x (kernel - 1) = 24,576
    ssm = 32 * 128 * 128  # v_heads x k_head_dim x v_head_dim = 524,288
    assert (spec.recurrent_conv_elements, spec.recurrent_ssm_elements) == (conv, ssm)
    assert spec.recurrent_state_bytes() == 36 * (conv + ssm) * 2  # 39.5 MB per sequence in bf16


def test_qwen3_next_vllm_hybrid_page_layout() -> None:
    """vLLM grows the attention block until one page holds a DeltaNet layer's state:
    1,097,728 state bytes / 2,048 bytes per token-layer = 536 tokens -> 544 (a multiple of 16)."""
    dep, plan = _plan("Qwen/Qwen3-Next-80B-A3B-Instruct", "fp8", max_model_len=32768)
    layout = kv_layout(dep.model, 16, 2 * 2 * 256 * 2, 1)
    assert layout.block_size == 544
    assert (layout.group_size, layout.full_groups, layout.recurrent_groups) == (12, 1, 3)
    assert request_blocks(dep.model, layout, 32768, 544, 8192) == math.ceil(32768 / 544) + 3
    page = 544 * 2048 * 12
    blocks = math.floor(plan.memory.kv_cache_gib * GIB / page)
    assert plan.memory.max_concurrency == pytest.approx(blocks / (61 + 3))
    assert plan.memory.kv_bytes_per_token == 2048 * 12  # KV grows only on the 12 full-attention layers


def test_nemotron_h_pattern_layers_and_state() -> None:
    spec = resolve_model("nvidia/NVIDIA-Nemotron-Nano-9B-v2").spec
    assert spec.params.total / 1e9 == pytest.approx(8.89, abs=0.01)  # model card: 8.89B
    assert (spec.full_attention_layers, spec.recurrent_layers, spec.stateless_layers) == (4, 27, 25)
    conv_dim = 128 * 80 + 2 * 8 * 128  # d_inner + 2 x groups x state = 12,288
    assert spec.recurrent_conv_elements == conv_dim * 3
    assert spec.recurrent_ssm_elements == 128 * 80 * 128
    layout = kv_layout(spec, 16, 2 * 8 * 128 * 2, 1)
    # (36,864 + 1,310,720) x 2 bytes = 2,695,168 per layer / 4,096 bytes per token-layer = 658 -> 672 tokens
    assert layout.block_size == 672
    assert (layout.group_size, layout.full_groups, layout.recurrent_groups) == (4, 1, 7)


def test_ollama_keeps_recurrent_state_in_f32() -> None:
    _, plan = _plan("nvidia/NVIDIA-Nemotron-Nano-9B-v2", "q4_k_m", engine="ollama", num_ctx=8192, num_parallel=2)
    kv = 2 * 8192 * 4 * (2 * 8 * 128 * 2)  # 2 slots x 8,192 tokens x 4 attention layers x f16 K and V
    state = 2 * 27 * (36_864 + 1_310_720) * 4
    assert plan.memory.kv_cache_gib * GIB == pytest.approx(kv + state)


@pytest.mark.parametrize(("config", "feature"), [
    ({"model_type": "deepseek_v41", "num_key_value_heads": 1}, "Engram memory and candidate-block attention"),
    ({"model_type": "deepseek_v4", "compress_ratios": [4, 2]}, "compress ratio(s) 2"),
    ({"model_type": "falcon_h1"}, "parallel attention + Mamba"),
    ({"model_type": "llama", "kv_lora_rank": 512}, "multi-head latent attention"),
    ({"model_type": "llama", "layer_types": ["full_attention", "kda_attention"]}, "kda_attention"),
    ({"model_type": "nemotron_h", "moe_latent_size": 1024}, "latent MoE"),
    ({"model_type": "gemma3n_text", "num_kv_shared_layers": 10}, "reuse another layer's KV cache"),
])
def test_unmodelled_features_are_refused_by_name(config: dict, feature: str) -> None:
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
            "intermediate_size": 128}
    with pytest.raises(UserError, match=re.escape(feature)) as err:
        spec_from_config({**base, **config}, "x/y", "x/config.json")
    assert "\n" not in str(err.value)


def test_nemotron3_nano_moe_blocks_and_float32_ssm_state() -> None:
    spec = resolve_model("nemotron3:30b").spec
    assert spec.params.total / 1e9 == pytest.approx(31.6, abs=0.05)  # model card: 31.6B
    assert spec.params.active / 1e9 == pytest.approx(3.6, abs=0.05)  # model card: ~3.6B with embeddings
    assert (spec.full_attention_layers, spec.recurrent_layers, spec.moe_layers) == (6, 23, 23)
    # mamba_ssm_cache_dtype float32: the SSM state takes 4 bytes an element, the conv state the model's 2
    conv, ssm = (64 * 64 + 2 * 8 * 128) * 3, 64 * 64 * 128
    assert spec.recurrent_state_bytes() == 23 * (conv * 2 + ssm * 4)


def test_qwen36_counts_its_vision_tower_and_mtp_head() -> None:
    spec = resolve_model("Qwen/Qwen3.6-35B-A3B").spec
    assert spec.params.total / 1e9 == pytest.approx(35, rel=0.02)  # "35B-A3B"
    assert spec.params.active / 1e9 == pytest.approx(3, rel=0.2)
    assert spec.params.vision > 0.4e9 and spec.params.mtp > 0
    assert (spec.full_attention_layers, spec.recurrent_layers) == (10, 30)
    plan = _plan("Qwen/Qwen3.6-35B-A3B", "bf16")[1]
    assert plan.memory.weights_gib * GIB == pytest.approx(2 * (spec.params.total), rel=1e-6)  # tower in, MTP out


def test_glm_moe_reads_deepseek_style_expert_keys() -> None:
    config = {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "hidden_size": 4096,
              "num_hidden_layers": 4, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
              "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 128,
              "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1, "vocab_size": 151552,
              "num_nextn_predict_layers": 1, "attention_bias": True}
    spec = spec_from_config(config, "zai-org/x", "x")
    assert (spec.num_experts, spec.experts_per_token, spec.moe_layers) == (128, 8, 3)
    assert spec.params.experts == 3 * 128 * 3 * 4096 * 1408
    assert spec.params.dense_mlp == 3 * 4096 * 10944  # one dense first layer
    assert spec.params.mtp > 0


def test_deepseek_v32_fp8_cache_uses_the_fp8_ds_mla_layout() -> None:
    _, plan = _plan("deepseek-ai/DeepSeek-V3.2", "fp8", gpus=8, kv_cache_dtype="fp8")
    # 512 FP8 latent + 4 fp32 scales + 64 BF16 rope = 656 bytes, plus the 132-byte indexer key
    assert plan.memory.kv_bytes_per_token == (656 + 132) * 61 * 8


@pytest.mark.parametrize(("model", "total", "active"), [
    ("Qwen/Qwen3.5-122B-A10B", 122, 10),  # the names' totals and active counts
    ("Qwen/Qwen3.5-27B", 27, 27),
    ("zai-org/GLM-4.7-Flash", 30, 3.5),
])
def test_2026_bundled_totals_match_their_names(model: str, total: float, active: float) -> None:
    params = resolve_model(model).spec.params
    assert params.total / 1e9 == pytest.approx(total, rel=0.03)
    assert params.active / 1e9 == pytest.approx(active, rel=0.15)


def test_glm47_flash_is_latent_attention_with_one_dense_layer() -> None:
    spec = resolve_model("glm-4.7-flash:30b").spec
    assert spec.is_mla and spec.moe_layers == 46 and spec.mtp_layers == 1
    assert spec.kv_elements_per_token() == 47 * (512 + 64)

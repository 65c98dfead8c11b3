"""Gemma 4 and DeepSeek-V4 against hand-worked numbers: per-layer-type KV, shared-KV layers, per-layer
embeddings, DeepSeek-V4's windowed / compressed / indexer caches in vLLM's packed layout; and generated
checkpoints of each through the real huggingface_hub client against the local Hub-shaped server."""

from __future__ import annotations

import json
import math

import pytest

from hub_server import HubRepo, HubServer, safetensors_file, tensor_bytes
from sparkserve.hardware.catalog import resolve_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.models.config import spec_from_config
from sparkserve.plan import kv_kinds
from sparkserve.plan.memory import GIB, weight_bytes
from sparkserve.plan.planner import deployment, plan_service
from sparkserve.plan.quant import weight_format
from sparkserve.plan.speed import Workload, kv_bytes_per_context


def _plan(model: str, quant: str, hardware: str = "dgx-spark", **settings):
    spec = resolve_model(model).spec
    dep = deployment(resolve_profile(hardware), spec, quant, "vllm", **settings)
    return dep, plan_service(dep, Workload())


# ---------------------------------------------------------------------------------------------
# Gemma 4


def test_gemma4_31b_global_layers_cache_fewer_wider_heads() -> None:
    """Local layers: 16 KV heads x 256 x K and V x 2 bytes = 16,384 bytes a token; the 10 global layers
    (every sixth): 4 heads x 512 x 2 x 2 = 8,192, K cached as V too (attention_k_eq_v keeps both slots)."""
    spec = resolve_model("google/gemma-4-31B-it").spec
    local, full = spec.cache_kinds
    assert (local.layers, local.kv_heads, local.head_dim, local.window) == (50, 16, 256, 1024)
    assert (full.layers, full.kv_heads, full.head_dim, full.window) == (10, 4, 512, None)
    assert kv_kinds.bytes_per_token(local, "auto", 1) == 16_384
    assert kv_kinds.bytes_per_token(full, "auto", 1) == 8_192
    _, plan = _plan("google/gemma-4-31B-it", "bf16", max_model_len=32768)
    assert plan.memory.kv_bytes_per_token == 10 * 8_192  # what each token adds once the windows are full


def test_gemma4_31b_vllm_pages_and_groups() -> None:
    """16-token local pages are 16 x 16,384 = 262,144 bytes; a global page matches that with 32 tokens. Groups
    of 10 layers (the smaller count): 5 local groups and 1 global, 2,621,440 bytes a block. A 32,768-token
    request holds 5 x ceil((1,024 - 1 + 8,192) / 16) = 5 x 576 local blocks and ceil(32,768 / 32) = 1,024."""
    dep, plan = _plan("google/gemma-4-31B-it", "bf16", max_model_len=32768)
    lay = kv_kinds.layout(dep.model, "auto", 1, 16)
    assert lay.block_bytes == 2_621_440
    assert [(g.page_tokens, g.subgroups) for g in lay.groups] == [(16, 5), (32, 1)]
    assert lay.request_blocks(32768, 8192) == 5 * 576 + 1024
    blocks = math.floor(plan.memory.kv_cache_gib * GIB / 2_621_440)
    assert plan.memory.max_concurrency == pytest.approx(blocks / 3904)
    assert plan.memory.kv_tokens == int(blocks / 3904 * 32768)


def test_gemma4_tensor_parallel_splits_both_kinds_of_heads() -> None:
    _, plan = _plan("google/gemma-4-31B-it", "bf16", hardware="h200", gpus=2, max_model_len=32768)
    # 2 global heads per rank x 512 x 2 x 2 bytes x 10 layers, summed over the 2 ranks
    assert plan.memory.kv_bytes_per_token == 2 * (10 * 2 * 512 * 2 * 2)


def test_gemma4_shared_kv_layers_cache_nothing() -> None:
    """E4B: 42 layers, the last 18 reuse KV, so only the first 24 cache (20 local, 4 global); the global ones
    keep 2 KV heads (no attention_k_eq_v) x 512: 2 x 2 x 512 x 2 = 4,096 bytes a token each."""
    spec = resolve_model("google/gemma-4-E4B-it").spec
    local, full = spec.cache_kinds
    assert (local.layers, full.layers) == (20, 4)
    assert (local.attending_layers, full.attending_layers) == (35, 7)  # every layer still attends
    assert kv_kinds.growth_bytes_per_token(spec, "auto", 1) == 4 * 4_096
    # local pages take 32 tokens to match a 16-token global page (LMCache's Gemma 4 recipe documents vLLM's
    # "sliding 32, full 16" for E4B); groups of 4 layers: 5 local groups and 1 global
    lay = kv_kinds.layout(spec, "auto", 1, 16)
    assert [(g.page_tokens, g.subgroups) for g in lay.groups] == [(32, 5), (16, 1)]
    # decoding at 8,192 tokens reads 20 x 512 window tokens x 2,048 bytes plus 4 x 8,192 x 4,096
    dep = deployment(resolve_profile("dgx-spark"), spec, "bf16", "vllm")
    assert kv_bytes_per_context(dep, 8192) == 20 * 512 * 2_048 + 4 * 8192 * 4_096


def test_gemma4_ollama_keeps_the_window_of_local_layers() -> None:
    """llama.cpp's SWA cache keeps 512 tokens of E4B's 20 caching local layers (2,048 f16 bytes a token each)
    and all 8,192 tokens of its 4 caching global layers (4,096 bytes)."""
    dep = deployment(resolve_profile("dgx-spark"), resolve_model("google/gemma-4-E4B-it").spec, "q4_k_m", "ollama",
                     num_ctx=8192, num_parallel=1)
    plan = plan_service(dep, Workload())
    assert plan.memory.kv_cache_gib * GIB == pytest.approx(20 * 512 * 2_048 + 4 * 8192 * 4_096)


def test_gemma4_parameters_match_the_model_cards() -> None:
    big = resolve_model("google/gemma-4-31B-it").spec.params
    assert (big.total - big.vision) / 1e9 == pytest.approx(30.7, abs=0.05)  # card: 30.7B
    moe = resolve_model("google/gemma-4-26B-A4B-it").spec
    assert (moe.params.total - moe.params.vision) / 1e9 == pytest.approx(25.2, abs=0.1)  # card: 25.2B total
    assert moe.params.active / 1e9 == pytest.approx(3.8, abs=0.1)  # card: 3.8B active
    assert (moe.num_experts, moe.experts_per_token, moe.moe_layers) == (128, 8, 30)
    e2b = resolve_model("google/gemma-4-E2B-it").spec.params
    assert e2b.total / 1e9 == pytest.approx(5.1, abs=0.05)  # card: 5.1B with embeddings
    assert e2b.active / 1e9 == pytest.approx(2.3, abs=0.05)  # card: 2.3B effective
    assert e2b.per_layer_embedding == 262_144 * 35 * 256  # one table: vocabulary x layers x 256


def test_gemma4_k_eq_v_global_layer_has_no_v_projection() -> None:
    """Two layers (local, global), hidden 64, 4 heads, 2 local KV heads x 16, 1 global KV head x 32:
    local q 64x64 + k 64x32 + v 64x32 + o 64x64 + norms 2x16 = 12,320; global q 64x128 + k 64x32 + o 128x64
    + norms 2x32 = 18,496 (no v_proj)."""
    text = {"model_type": "gemma4_text", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 32, "num_global_key_value_heads": 1,
            "attention_k_eq_v": True, "hidden_size_per_layer_input": 0, "intermediate_size": 128,
            "vocab_size": 100, "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 8}
    spec = spec_from_config({"model_type": "gemma4", "text_config": text}, "x/y", "x")
    assert spec.params.attention == 12_320 + 18_496
    assert spec.params.dense_mlp == 2 * 3 * 64 * 128


# ---------------------------------------------------------------------------------------------
# DeepSeek-V4


def test_deepseek_v4_flash_pages_stride_and_growth() -> None:
    """Pages (rounded up to 576 bytes): window 64 x 584 = 37,376 -> 37,440; ratio-4 latents 256 / 4 x 584 ->
    37,440; indexer keys 64 x 132 = 8,448 -> 8,640; ratio-128 latents 2 x 584 = 1,168 -> 1,728; states
    4 x 8,192 = 32,768 -> 32,832, 4 x 2,048 -> 8,640, 8 x 4,096 -> 32,832. Layer counts [21, 43, 21, 20]
    pad least at 22, so the 43 window layers make two groups. The slab is the widest group:
    21 x 37,440 + 21 x 8,640 + 20 x 1,728 = 1,002,240 bytes per 256 tokens."""
    spec = resolve_model("deepseek-ai/DeepSeek-V4-Flash").spec
    assert kv_kinds.approximate_gcd([21, 43, 21, 20], 21) == 22
    lay = kv_kinds.layout(spec, "fp8", 1, 16)
    assert (lay.block_bytes, lay.block_tokens) == (1_002_240, 256)
    assert [(g.page_tokens, g.window, g.subgroups) for g in lay.groups] == [
        (256, None, 1), (64, 128, 2), (4, 8, 1), (8, 128, 1)]
    # the growth per token: (21 x 37,440 + 21 x 8,640 + 20 x 1,728) / 256 = 3,915 bytes
    assert kv_kinds.growth_bytes_per_token(spec, "fp8", 1) == 3_915


def test_deepseek_v4_request_blocks_include_the_windows_in_flight() -> None:
    """A 131,072-token request with 8,192 tokens in flight: ceil(131,072 / 256) = 512 latent blocks; two window
    groups of ceil((128 - 1 + 8,192) / 64) + 1 = 131; ratio-4 states ceil((8 - 1 + 8,192) / 4) + 1 = 2,051;
    ratio-128 states ceil(8,319 / 8) + 1 = 1,041."""
    spec = resolve_model("deepseek-ai/DeepSeek-V4-Flash").spec
    lay = kv_kinds.layout(spec, "fp8", 1, 16)
    assert lay.request_blocks(131_072, 8192) == 512 + 2 * 131 + 2_051 + 1_041
    dep, plan = _plan("deepseek-ai/DeepSeek-V4-Flash", "fp8", hardware="h200", gpus=2, max_model_len=131_072)
    blocks = math.floor(plan.memory.kv_cache_gib / 2 * GIB / 1_002_240)
    assert plan.memory.max_concurrency == pytest.approx(blocks / 3_866)
    assert plan.memory.kv_bytes_per_token == 2 * 3_915  # latents replicated on both ranks


def test_deepseek_v4_decode_reads_topk_latents_and_every_index_key() -> None:
    """At 100,000 tokens one step of one sequence reads: 43 window layers x 128 x 584; 21 ratio-4 layers x
    512 (index_topk of 25,000) x 584 and all 25,000 indexer keys x 132; 20 ratio-128 layers x 781.25 x 584."""
    spec = resolve_model("deepseek-ai/DeepSeek-V4-Flash").spec
    dep = deployment(resolve_profile("h200"), spec, "fp8", "vllm", kv_cache_dtype="fp8")
    expected = 43 * 128 * 584 + 21 * 512 * 584 + 21 * 25_000 * 132 + 20 * (100_000 / 128) * 584
    assert kv_bytes_per_context(dep, 100_000) == pytest.approx(expected)


def test_vllm_caches_deepseek_v4_in_fp8_only() -> None:
    """Unset, the KV-cache type is fp8 (vLLM stores V4's latents only as fp8_ds_mla); BF16 asked is refused."""
    from sparkserve.engines import get_engine

    spec = resolve_model("deepseek-ai/DeepSeek-V4-Flash").spec
    hw = resolve_profile("h200")
    assert deployment(hw, spec, "fp8", "vllm", gpus=2).kv_cache_dtype == "fp8"
    assert deployment(hw, resolve_model("google/gemma-4-31B-it").spec, "bf16", "vllm").kv_cache_dtype == "auto"
    plan = plan_service(deployment(hw, spec, "fp8", "vllm", gpus=2, kv_cache_dtype="bfloat16"), Workload())
    problems = get_engine("vllm").constraint_problems(spec, "fp8", plan.memory.settings)
    assert problems == ["deepseek-ai/DeepSeek-V4-Flash keeps its latents only in vLLM's fp8_ds_mla layout: "
                        "pass --kv-cache-dtype fp8"]


def test_deepseek_v4_flash_counts_and_mxfp4_experts_in_an_fp8_checkpoint() -> None:
    spec = resolve_model("deepseek-ai/DeepSeek-V4-Flash").spec
    p = spec.params
    assert p.total / 1e9 == pytest.approx(284, rel=0.005)  # card: 284B
    assert spec.checkpoint_quant == "fp8" and spec.expert_format == "mxfp4"
    assert p.experts == 43 * 256 * 3 * 4096 * 2048
    fp8 = weight_format("fp8")
    # experts at MXFP4 (4 + 8/32 bits), the 16-bit groups at 2 bytes, the other linears at 1 byte
    expected = (p.experts * 4.25 / 8 + 2 * (p.embedding + p.lm_head + p.other)
                + (p.attention + p.moe_shared + p.dense_mlp))
    assert weight_bytes(spec, fp8, "vllm") == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Generated checkpoints through the local Hub-shaped server


def _gemma4_checkpoint() -> tuple[dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """Four layers (local, global, local, global), the last one reusing layer 1's KV, per-layer inputs of 8, an
    MoE block of 4 experts, a one-layer vision tower."""
    h, ple, vocab = 64, 8, 128
    text = {"model_type": "gemma4_text", "hidden_size": h, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "global_head_dim": 32, "num_global_key_value_heads": 1,
            "attention_k_eq_v": True, "num_kv_shared_layers": 1, "hidden_size_per_layer_input": ple,
            "vocab_size_per_layer_input": vocab, "intermediate_size": 96, "enable_moe_block": True,
            "num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 32, "vocab_size": vocab,
            "sliding_window": 16, "max_position_embeddings": 4096,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}
    vision = {"model_type": "gemma4_vision", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16, "patch_size": 4,
              "position_embedding_size": 16}
    config = {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "text_config": text,
              "vision_config": vision, "dtype": "bfloat16"}
    t: dict[str, tuple[str, tuple[int, ...]]] = {
        "model.language_model.embed_tokens.weight": ("BF16", (vocab, h)),
        "model.language_model.embed_tokens_per_layer.weight": ("BF16", (vocab, 4 * ple)),
        "model.language_model.per_layer_model_projection.weight": ("BF16", (4 * ple, h)),
        "model.language_model.norm.weight": ("BF16", (h,)),
        "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight": ("BF16", (32, 32)),
        "model.embed_vision.embedding_projection.weight": ("BF16", (h, 32)),
    }
    for i, kind in enumerate(text["layer_types"]):
        p = f"model.language_model.layers.{i}"
        hd, kv = (32, 1) if kind == "full_attention" else (16, 2)
        t[f"{p}.self_attn.q_proj.weight"] = ("BF16", (4 * hd, h))
        t[f"{p}.self_attn.k_proj.weight"] = ("BF16", (kv * hd, h))
        if kind != "full_attention":
            t[f"{p}.self_attn.v_proj.weight"] = ("BF16", (kv * hd, h))
        t[f"{p}.self_attn.o_proj.weight"] = ("BF16", (h, 4 * hd))
        t[f"{p}.input_layernorm.weight"] = ("BF16", (h,))
        t[f"{p}.mlp.gate_proj.weight"] = ("BF16", (96, h))
        t[f"{p}.mlp.down_proj.weight"] = ("BF16", (h, 96))
        t[f"{p}.router.proj.weight"] = ("BF16", (4, h))
        t[f"{p}.experts.gate_up_proj"] = ("BF16", (4, 64, h))
        t[f"{p}.experts.down_proj"] = ("BF16", (4, h, 32))
        t[f"{p}.per_layer_input_gate.weight"] = ("BF16", (ple, h))
    return config, t


def test_gemma4_checkpoint_from_the_hub(hub_server: HubServer) -> None:
    config, tensors = _gemma4_checkpoint()
    hub_server.add(HubRepo("acme/Gemma4-Tiny", {"config.json": json.dumps(config).encode(),
                                               "model.safetensors": safetensors_file(tensors)}))
    spec = resolve_model("acme/Gemma4-Tiny").spec
    groups = dict(spec.checkpoint_bytes)
    assert weight_bytes(spec, weight_format("bf16"), "vllm") == sum(tensor_bytes(d, s) for d, s in tensors.values())
    assert groups["per_layer_embedding"] == tensor_bytes("BF16", (128, 32))
    assert groups["vision"] == tensor_bytes("BF16", (32, 32)) + tensor_bytes("BF16", (64, 32))
    assert groups["experts"] == 4 * (tensor_bytes("BF16", (4, 64, 64)) + tensor_bytes("BF16", (4, 64, 32)))
    local, full = spec.cache_kinds
    assert (local.layers, full.layers, full.attending_layers) == (2, 1, 2)  # layer 3 reuses layer 1's KV
    _, plan = _plan("acme/Gemma4-Tiny", "bf16", max_model_len=4096)
    assert plan.memory.fits
    assert plan.memory.kv_bytes_per_token == 1 * 32 * 2 * 2  # the global layer: 1 head x 32 x K, V x 2 bytes


def test_deepseek_v4_checkpoint_from_the_hub(hub_server: HubServer) -> None:
    """Three layers (windowed only, ratio 4, ratio 128) and an MTP layer listed in compress_ratios; FP8 linears
    with their scales, MXFP4 experts (two values a byte, a scale per 32); the MTP tensors are shipped, not
    loaded."""
    h = 128
    config = {"architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4", "hidden_size": h,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64,
              "qk_rope_head_dim": 16, "q_lora_rank": 32, "o_lora_rank": 32, "o_groups": 2,
              "moe_intermediate_size": 64, "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
              "vocab_size": 256, "sliding_window": 8, "index_n_heads": 2, "index_head_dim": 32, "index_topk": 16,
              "hc_mult": 2, "num_hash_layers": 1, "num_nextn_predict_layers": 1, "compress_ratios": [0, 4, 128, 0],
              "max_position_embeddings": 8192, "expert_dtype": "fp4",
              "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    t: dict[str, tuple[str, tuple[int, ...]]] = {"embed.weight": ("BF16", (256, h)), "head.weight": ("BF16", (256, h)),
                                                 "norm.weight": ("BF16", (h,))}
    for i in range(3):
        p = f"layers.{i}"
        t[f"{p}.attn.wq_a.weight"] = ("F8_E4M3", (32, h))
        t[f"{p}.attn.wq_a.scale"] = ("F8_E8M0", (1, 1))
        t[f"{p}.attn.wkv.weight"] = ("F8_E4M3", (64, h))
        t[f"{p}.attn.wo_b.weight"] = ("F8_E4M3", (h, 64))
        t[f"{p}.attn_norm.weight"] = ("BF16", (h,))
        t[f"{p}.hc_attn_fn"] = ("F32", (8, 2 * h))
        t[f"{p}.ffn.gate.weight"] = ("BF16", (4, h))
        for e in range(4):
            t[f"{p}.ffn.experts.{e}.w1.weight"] = ("I8", (64, h // 2))
            t[f"{p}.ffn.experts.{e}.w1.scale"] = ("F8_E8M0", (64, h // 32))
        t[f"{p}.ffn.shared_experts.w1.weight"] = ("F8_E4M3", (64, h))
    t["mtp.0.attn.wq_a.weight"] = ("F8_E4M3", (32, h))
    t["mtp.0.ffn.experts.0.w1.weight"] = ("I8", (64, h // 2))
    hub_server.add(HubRepo("acme/DSV4-Tiny", {"config.json": json.dumps(config).encode(),
                                             "model.safetensors": safetensors_file(t)}))
    spec = resolve_model("acme/DSV4-Tiny").spec
    mtp = sum(tensor_bytes(d, s) for n, (d, s) in t.items() if n.startswith("mtp."))
    assert dict(spec.checkpoint_bytes)["mtp"] == mtp
    assert weight_bytes(spec, weight_format("fp8"), "vllm") == sum(tensor_bytes(d, s) for d, s in t.values()) - mtp
    kinds = {k.name: (k.layers, k.slot_bytes, k.tokens_per_slot) for k in spec.cache_kinds}
    assert kinds["window"] == (3, 584, 1) and kinds["c4"] == (1, 584, 4) and kinds["c128"] == (1, 584, 128)
    assert kinds["c4-index"] == (1, 32, 4)  # 32 FP8 values, fp32 scales only per whole 128 (vLLM: 32 // 128 = 0)
    _, plan = _plan("acme/DSV4-Tiny", "fp8", max_model_len=8192, kv_cache_dtype="fp8")
    assert plan.memory.fits
    # one ratio-4 layer: 64 latents x 584 -> 37,440; 64 keys x 32 = 2,048 -> 2,304; one ratio-128 latent page
    # 2 x 584 = 1,168 -> 1,728; together per 256 tokens
    assert plan.memory.kv_bytes_per_token == pytest.approx((37_440 + 2_304 + 1_728) / 256)

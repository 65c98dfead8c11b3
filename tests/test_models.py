"""Model catalog: derived parameter counts against published sizes, KV layout, and name resolution."""

from __future__ import annotations

import json
import os
from importlib import resources

import pytest

from sparkserve.errors import UserError
from sparkserve.models.catalog import ResolvedModel, list_models, resolve_model
from sparkserve.models.config import spec_from_config

B = 1e9


def params(name: str):
    return resolve_model(name).spec.params


# Published totals (model cards unless noted), in billions.
@pytest.mark.parametrize(
    ("model", "published"),
    [
        ("Qwen/Qwen3-0.6B", 0.6),
        ("Qwen/Qwen3-4B", 4.0),
        ("Qwen/Qwen3-8B", 8.2),
        ("Qwen/Qwen3-14B", 14.8),
        ("Qwen/Qwen3-32B", 32.8),
        ("Qwen/Qwen3-30B-A3B", 30.5),
        ("Qwen/Qwen3-235B-A22B", 235.0),
        ("Qwen/Qwen2.5-7B-Instruct", 7.61),
        ("meta-llama/Llama-3.1-8B-Instruct", 8.03),
        ("meta-llama/Llama-3.1-70B-Instruct", 70.6),
        ("meta-llama/Llama-3.3-70B-Instruct", 70.6),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 70.6),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.8),
        ("openai/gpt-oss-20b", 20.9),
        ("openai/gpt-oss-120b", 116.8),
        ("google/gemma-3-4b-it", 4.3),  # HF page, SigLIP tower included
        ("google/gemma-3-27b-it", 27.4),  # HF page, SigLIP tower included
        ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", 24.0),
    ],
)
def test_total_matches_published(model: str, published: float) -> None:
    assert params(model).total / B == pytest.approx(published, rel=0.01)


def test_qwen3_1_7b_total_within_card_rounding() -> None:
    # The card's "1.7B" has one decimal; the derived 1.72B is 1.2% above it, inside that rounding.
    assert params("Qwen/Qwen3-1.7B").total / B == pytest.approx(1.7, abs=0.05)


def test_exact_totals_where_the_count_is_published_to_the_parameter() -> None:
    assert params("meta-llama/Llama-3.1-8B-Instruct").total == 8_030_261_248
    assert params("meta-llama/Llama-3.1-70B-Instruct").total == 70_553_706_496


@pytest.mark.parametrize(
    ("model", "non_embedding"),
    [
        ("Qwen/Qwen3-0.6B", 0.44),
        ("Qwen/Qwen3-1.7B", 1.4),
        ("Qwen/Qwen3-4B", 3.6),
        ("Qwen/Qwen3-8B", 6.95),
        ("Qwen/Qwen3-32B", 31.2),
        ("Qwen/Qwen2.5-7B-Instruct", 6.53),
    ],
)
def test_qwen_non_embedding_matches_model_card(model: str, non_embedding: float) -> None:
    p = params(model)
    assert (p.total - p.embedding - p.lm_head) / B == pytest.approx(non_embedding, rel=0.01)


def test_qwen_moe_active_matches_model_card() -> None:
    assert params("Qwen/Qwen3-235B-A22B").active / B == pytest.approx(22.0, rel=0.01)
    # The card's "3.3B activated" is the derived 3.353B cut to one decimal (1.6% low), so pin the
    # hand-derived count: 48 x (attention 18,874,624 + 8 experts x 4,718,592 + router 262,144
    # + norms 4,096) + embedding and lm_head 2 x 311,164,928 + final norm 2,048.
    active = params("Qwen/Qwen3-30B-A3B").active
    assert active == 3_353_032_704
    assert 3.3 * B <= active < 3.4 * B


@pytest.mark.parametrize(("model", "active"), [("openai/gpt-oss-20b", 3.6), ("openai/gpt-oss-120b", 5.1)])
def test_gpt_oss_active_matches_model_card(model: str, active: float) -> None:
    # OpenAI's card counts the unembedding but not the input embedding (a row lookup) as active.
    p = params(model)
    assert (p.active - p.embedding) / B == pytest.approx(active, rel=0.01)


def test_dense_models_are_fully_active() -> None:
    p = params("Qwen/Qwen3-32B")
    assert p.active == p.total
    assert p.experts == p.experts_active == p.moe_shared == 0


def test_qwen3_moe_shape() -> None:
    spec = resolve_model("Qwen/Qwen3-30B-A3B").spec
    assert (spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size) == (128, 8, 768)
    assert spec.moe_layers == spec.num_layers == 48
    assert spec.intermediate_size == 0  # every layer is MoE
    assert spec.params.moe_shared == 48 * 2048 * 128  # router gate only
    assert spec.params.experts == 48 * 128 * 3 * 2048 * 768


def test_mlp_only_layers_and_sparse_step_make_dense_layers() -> None:
    config = json.loads(_bundled_text("Qwen/Qwen3-30B-A3B"))
    config.update(mlp_only_layers=[0, 1], decoder_sparse_step=2)
    spec = spec_from_config(config, "test/moe", "test")
    assert spec.moe_layers == 23  # odd layers 3..47 (layer 1 is forced dense)
    assert spec.intermediate_size == 6144
    assert spec.params.dense_mlp == 25 * 3 * 2048 * 6144


def test_qwen2_has_qkv_bias_and_qwen3_has_qk_norm() -> None:
    q2 = resolve_model("Qwen/Qwen2.5-7B-Instruct").spec
    h, q, kv = 3584, 28 * 128, 4 * 128
    assert q2.params.attention == 28 * (h * q + 2 * h * kv + q * h + q + 2 * kv)
    q3 = resolve_model("Qwen/Qwen3-8B").spec
    h, q, kv = 4096, 32 * 128, 8 * 128
    assert q3.params.attention == 36 * (h * q + 2 * h * kv + q * h + 2 * 128)


def test_kv_elements_per_token() -> None:
    llama = resolve_model("meta-llama/Llama-3.1-8B-Instruct").spec
    assert llama.kv_elements_per_token() == 2 * 8 * 128 * 32 == 65536  # 128 KiB per token in bf16
    assert resolve_model("Qwen/Qwen3-32B").spec.kv_elements_per_token() == 2 * 8 * 128 * 64
    assert resolve_model("meta-llama/Llama-3.1-70B-Instruct").spec.kv_elements_per_token() == 2 * 8 * 128 * 80


def test_gpt_oss_alternates_sliding_and_full_attention() -> None:
    spec = resolve_model("openai/gpt-oss-20b").spec
    assert (spec.sliding_window, spec.sliding_window_layers, spec.full_attention_layers) == (128, 12, 12)
    assert spec.kv_elements_per_token() == 2 * 8 * 64 * 12
    assert spec.kv_elements_sliding() == 2 * 8 * 64 * 12
    assert resolve_model("openai/gpt-oss-120b").spec.sliding_window_layers == 18


def test_gpt_oss_ships_mxfp4_experts_and_bf16_rest() -> None:
    spec = resolve_model("openai/gpt-oss-120b").spec
    assert spec.checkpoint_quant == "mxfp4"
    assert "experts" not in spec.bf16_modules
    assert {"attention", "embedding", "lm_head", "moe_shared"} <= set(spec.bf16_modules)
    assert (spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size) == (128, 4, 2880)


@pytest.mark.parametrize(
    ("model", "sliding", "layers"), [("google/gemma-3-27b-it", 52, 62), ("google/gemma-3-4b-it", 29, 34)]
)
def test_gemma3_five_local_layers_per_global(model: str, sliding: int, layers: int) -> None:
    spec = resolve_model(model).spec
    assert (spec.num_layers, spec.sliding_window_layers, spec.sliding_window) == (layers, sliding, 1024)
    assert spec.full_attention_layers == layers // 6


def test_gemma3_text_defaults_vision_and_tied_embeddings() -> None:
    spec = resolve_model("google/gemma-3-4b-it").spec
    assert (spec.num_attention_heads, spec.num_kv_heads, spec.head_dim, spec.vocab_size) == (8, 4, 256, 262208)
    assert spec.tie_word_embeddings and spec.params.lm_head == 0
    assert spec.architecture == "Gemma3ForConditionalGeneration"
    assert 0.40 * B < spec.params.vision < 0.45 * B  # SigLIP-So400m tower plus projector
    assert spec.params.active == spec.params.total - spec.params.vision


def test_gemma3_causal_lm_text_only() -> None:
    config = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 1152,
        "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 256, "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144,
        "max_position_embeddings": 32768,
    }  # google/gemma-3-1b-it shape
    spec = spec_from_config(config, "google/gemma-3-1b-it", "test")
    assert spec.params.vision == 0 and spec.tie_word_embeddings
    assert (spec.sliding_window_layers, spec.full_attention_layers) == (22, 4)
    assert spec.params.total / B == pytest.approx(1.0, rel=0.01)


def test_mistral3_text_config_and_pixtral_vision() -> None:
    spec = resolve_model("mistralai/Mistral-Small-3.2-24B-Instruct-2506").spec
    assert (spec.hidden_size, spec.num_layers, spec.num_kv_heads, spec.head_dim) == (5120, 40, 8, 128)
    assert spec.sliding_window_layers == 0 and spec.sliding_window is None
    assert 0.4 * B < spec.params.vision < 0.45 * B
    assert not spec.tie_word_embeddings


def test_qwen_unused_sliding_window_is_ignored() -> None:
    spec = resolve_model("Qwen/Qwen2.5-7B-Instruct").spec  # sliding_window 131072, use_sliding_window false
    assert (spec.sliding_window, spec.sliding_window_layers) == (None, 0)


def test_mistral_style_sliding_window_covers_every_layer() -> None:
    config = _llama_like(model_type="mistral", sliding_window=4096)
    assert spec_from_config(config, "m", "test").sliding_window_layers == 32
    config["use_sliding_window"] = False
    assert spec_from_config(config, "m", "test").sliding_window_layers == 0


def test_head_dim_from_config_or_hidden_over_heads() -> None:
    assert spec_from_config(_llama_like(), "m", "test").head_dim == 128
    assert spec_from_config(_llama_like(head_dim=96), "m", "test").head_dim == 96


def test_unknown_architecture_uses_generic_dense_formula() -> None:
    generic = spec_from_config(_llama_like(architectures=["FooForCausalLM"], model_type="foo"), "x/foo", "test")
    llama = resolve_model("meta-llama/Llama-3.1-8B-Instruct").spec
    assert generic.architecture == "FooForCausalLM"
    assert generic.params == llama.params


def test_config_without_usable_keys_names_file_and_key() -> None:
    with pytest.raises(UserError, match=r"^/models/x/config\.json: config has no 'hidden_size'"):
        spec_from_config({"architectures": ["BertModel"]}, "x", "/models/x/config.json")


def test_every_bundled_file_parses_and_says_where_it_came_from() -> None:
    ids = list_models()
    assert len(ids) >= 19
    for model_id in ids:
        config = json.loads(_bundled_text(model_id))
        assert len(config["_source"]) > 40, model_id
        spec = resolve_model(model_id).spec
        assert spec.id == model_id and spec.source == "bundled"
        assert spec.params.total > 0 and spec.kv_elements_per_token() > 0


def test_lookup_is_case_insensitive_and_accepts_bare_names() -> None:
    assert resolve_model("qwen/qwen3-32b").spec.id == "Qwen/Qwen3-32B"
    assert resolve_model("qwen3-32b").spec.id == "Qwen/Qwen3-32B"
    assert resolve_model("GPT-OSS-20B").spec.id == "openai/gpt-oss-20b"


@pytest.mark.parametrize(
    ("alias", "base"),
    [
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B"),
        ("Qwen/Qwen3-30B-A3B-Thinking-2507", "Qwen/Qwen3-30B-A3B"),
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen/Qwen3-30B-A3B"),
        ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B"),
    ],
)
def test_aliases_share_the_base_shape(alias: str, base: str) -> None:
    spec = resolve_model(alias.lower()).spec
    assert spec.id == alias
    assert spec.params == resolve_model(base).spec.params
    assert spec.max_position_embeddings == 262_144


def test_prequantised_repos_take_base_shape_and_quant() -> None:
    fp8 = resolve_model("Qwen/Qwen3-32B-FP8")
    assert (fp8.spec.id, fp8.default_quant, fp8.spec.checkpoint_quant) == ("Qwen/Qwen3-32B-FP8", "fp8", "fp8")
    assert fp8.spec.params == resolve_model("Qwen/Qwen3-32B").spec.params
    assert "embedding" in fp8.spec.bf16_modules and "attention" not in fp8.spec.bf16_modules
    awq = resolve_model("qwen/qwen3-32b-awq")
    assert (awq.spec.id, awq.default_quant) == ("Qwen/Qwen3-32B-AWQ", "awq")
    assert resolve_model("Qwen/Qwen3-30B-A3B-Instruct-2507-FP8").spec.max_position_embeddings == 262_144


def test_bundled_bf16_models_have_no_default_quant() -> None:
    assert resolve_model("Qwen/Qwen3-8B") == ResolvedModel(resolve_model("Qwen/Qwen3-8B").spec, None, None)
    assert resolve_model("openai/gpt-oss-20b").default_quant == "mxfp4"


@pytest.mark.parametrize(
    ("tag", "hf_id", "quant"),
    [
        ("qwen3:0.6b", "Qwen/Qwen3-0.6B", "q4_k_m"),
        ("qwen3:30b", "Qwen/Qwen3-30B-A3B", "q4_k_m"),
        ("qwen3:30b-a3b", "Qwen/Qwen3-30B-A3B", "q4_k_m"),
        ("qwen3:235b", "Qwen/Qwen3-235B-A22B", "q4_k_m"),
        ("qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct", "q4_k_m"),
        ("llama3.1:70b", "meta-llama/Llama-3.1-70B-Instruct", "q4_k_m"),
        ("llama3.3:70b", "meta-llama/Llama-3.3-70B-Instruct", "q4_k_m"),
        ("gpt-oss:20b", "openai/gpt-oss-20b", "mxfp4"),
        ("gpt-oss:120b", "openai/gpt-oss-120b", "mxfp4"),
        ("gemma3:27b", "google/gemma-3-27b-it", "q4_k_m"),
        ("deepseek-r1:14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "q4_k_m"),
        ("deepseek-r1:70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "q4_k_m"),
        ("mistral-small3.2:24b", "mistralai/Mistral-Small-3.2-24B-Instruct-2506", "q4_k_m"),
        ("qwen3:32b-q8_0", "Qwen/Qwen3-32B", "q8_0"),
        ("llama3.1:8b-instruct-q4_K_M", "meta-llama/Llama-3.1-8B-Instruct", "q4_k_m"),
        ("qwen3:30b-a3b-instruct-2507-q4_K_M", "Qwen/Qwen3-30B-A3B-Instruct-2507", "q4_k_m"),
        ("gemma3:4b-it-fp16", "google/gemma-3-4b-it", "fp16"),
    ],
)
def test_ollama_tags(tag: str, hf_id: str, quant: str) -> None:
    resolved = resolve_model(tag)
    assert (resolved.spec.id, resolved.default_quant, resolved.ollama_tag) == (hf_id, quant, tag)


def test_bare_ollama_name_means_latest() -> None:
    resolved = resolve_model("qwen3")
    expected = ("Qwen/Qwen3-8B", "qwen3:latest", "q4_k_m")
    assert (resolved.spec.id, resolved.ollama_tag, resolved.default_quant) == expected
    assert resolve_model("qwen3:latest").spec.id == "Qwen/Qwen3-8B"


def test_local_directory_and_config_file(tmp_path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(_llama_like()))
    from_dir = resolve_model(str(model_dir))
    assert from_dir.spec.id == str(model_dir.resolve())
    assert from_dir.spec.source == str(model_dir / "config.json")
    assert from_dir.spec.params.total == 8_030_261_248
    assert resolve_model(str(model_dir / "config.json")).spec.params == from_dir.spec.params


def test_local_path_wins_over_catalog(tmp_path, monkeypatch) -> None:
    (tmp_path / "qwen3").mkdir()
    (tmp_path / "qwen3" / "config.json").write_text(json.dumps(_llama_like()))
    monkeypatch.chdir(tmp_path)
    assert resolve_model("qwen3").ollama_tag is None


def test_local_prequantised_checkpoint(tmp_path) -> None:
    config = _llama_like(quantization_config={"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]})
    (tmp_path / "config.json").write_text(json.dumps(config))
    resolved = resolve_model(str(tmp_path))
    assert (resolved.default_quant, resolved.spec.checkpoint_quant) == ("fp8", "fp8")


def test_hf_cache_lookup_picks_newest_snapshot(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "models--acme--Tiny-8B" / "snapshots"
    for rev, layers, mtime in (("aaa", 16, 1_000_000), ("bbb", 32, 2_000_000)):
        (repo / rev).mkdir(parents=True)
        config = repo / rev / "config.json"
        config.write_text(json.dumps(_llama_like(num_hidden_layers=layers)))
        os.utime(config, (mtime, mtime))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    resolved = resolve_model("acme/Tiny-8B")
    assert (resolved.spec.id, resolved.spec.num_layers) == ("acme/Tiny-8B", 32)
    assert resolved.spec.source == str(repo / "bbb" / "config.json")


def test_hf_home_cache_layout(tmp_path, monkeypatch) -> None:
    snapshot = tmp_path / "hub" / "models--acme--Tiny-8B" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(_llama_like()))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert resolve_model("acme/tiny-8b").spec.id == "acme/Tiny-8B"


def test_unknown_model_names_closest_matches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError) as err:
        resolve_model("Qwen/Qwen3-33B")
    message = str(err.value)
    assert message.startswith("unknown model 'Qwen/Qwen3-33B'; closest: Qwen/Qwen3-32B")
    assert message.endswith("point --model at a directory holding config.json")
    with pytest.raises(UserError, match="closest: llama3.1:70b"):
        resolve_model("llama3.1:405b")


def _bundled_text(model_id: str) -> str:
    folder = resources.files("sparkserve.models").joinpath("bundled")
    return folder.joinpath(model_id.replace("/", "--") + ".json").read_text(encoding="utf-8")


def _llama_like(**overrides) -> dict:
    """Llama-3.1-8B's architecture keys (bundled config)."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    }
    config.update(overrides)
    return config


# ---------------------------------------------------------------------------------------------------------------
# Catalog extension: models seen in scored vLLM logs and popular serving models.


@pytest.mark.parametrize(
    ("model", "published"),
    [
        ("codellama/CodeLlama-7b-hf", 6.74),
        ("google/gemma-7b", 8.54),
        ("google/gemma-2-2b-it", 2.61),
        ("google/gemma-2-9b-it", 9.24),
        ("google/gemma-2-27b-it", 27.2),
        ("google/gemma-3-1b-it", 1.0),
        ("google/gemma-3-12b-it", 12.2),  # HF page, SigLIP tower included
        ("ibm-granite/granite-3.1-2b-instruct", 2.53),
        ("ibm-granite/granite-3.1-8b-instruct", 8.17),
        ("microsoft/phi-2", 2.78),
        ("microsoft/Phi-3-mini-4k-instruct", 3.82),
        ("microsoft/phi-4", 14.7),
        ("Qwen/Qwen1.5-MoE-A2.7B", 14.3),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 109.0),
        ("meta-llama/Llama-3.2-1B-Instruct", 1.24),
        ("meta-llama/Llama-3.2-3B-Instruct", 3.21),
        ("mistralai/Mistral-7B-Instruct-v0.3", 7.25),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 46.7),
        ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", 24.0),
        ("Qwen/Qwen2.5-0.5B-Instruct", 0.494),
        ("Qwen/Qwen2.5-1.5B-Instruct", 1.54),
        ("Qwen/Qwen2.5-3B-Instruct", 3.09),
        ("Qwen/Qwen2.5-14B-Instruct", 14.7),
        ("Qwen/Qwen2.5-32B-Instruct", 32.8),  # HF page (card: 32.5B)
        ("Qwen/Qwen2.5-72B-Instruct", 72.7),
        ("Qwen/Qwen2.5-Coder-7B-Instruct", 7.61),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", 32.8),
        ("Qwen/QwQ-32B", 32.8),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.8),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03),
        ("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", 70.6),
    ],
)
def test_extended_catalog_totals_match_published(model: str, published: float) -> None:
    assert params(model).total / B == pytest.approx(published, rel=0.01)


def test_phi2_exact_total_and_biases() -> None:
    spec = resolve_model("microsoft/phi-2").spec
    p = spec.params
    assert p.total == 2_779_683_840  # microsoft/phi-2 safetensors parameter count
    h, v, inter = 2560, 51200, 10240
    assert (spec.head_dim, spec.num_kv_heads, spec.tie_word_embeddings) == (80, 32, False)
    assert p.lm_head == v * h + v  # untied lm_head with a bias
    assert p.attention == 32 * (4 * h * h + 4 * h)  # q/k/v/dense, all biased
    assert p.dense_mlp == 32 * (2 * h * inter + inter + h)  # fc1 -> fc2 (GELU), biased, no gate
    assert p.other == 32 * 2 * h + 2 * h  # one LayerNorm a layer (parallel block) and the final one


@pytest.mark.parametrize(
    ("model", "active"),
    [
        ("Qwen/Qwen1.5-MoE-A2.7B", 2.7),  # card: "2.7B activated"
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 17.0),  # card: "17B" (derived 17.17B, embeddings included)
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 12.9),
    ],
)
def test_extended_moe_active_matches_model_card(model: str, active: float) -> None:
    assert params(model).active / B == pytest.approx(active, rel=0.015)


def test_qwen2_moe_shared_expert_and_sigmoid_gate() -> None:
    spec = resolve_model("Qwen/Qwen1.5-MoE-A2.7B").spec
    h = 2048
    assert (spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size) == (60, 4, 1408)
    assert (spec.num_shared_experts, spec.moe_layers, spec.intermediate_size) == (1, 24, 0)
    assert spec.params.moe_shared == 24 * (3 * h * 5632 + h + h * 60)  # shared expert, its gate, the router
    assert spec.params.experts == 24 * 60 * 3 * h * 1408
    p = spec.params
    assert (p.active - p.embedding - p.lm_head) / B == pytest.approx(2.0, rel=0.05)  # card: 2.0B non-embedding


def test_llama4_scout_moe_shared_expert_chunked_attention_and_vision() -> None:
    spec = resolve_model("meta-llama/Llama-4-Scout-17B-16E-Instruct").spec
    h = 5120
    assert spec.architecture == "Llama4ForConditionalGeneration"
    assert (spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size) == (16, 1, 8192)
    assert (spec.num_shared_experts, spec.moe_layers, spec.intermediate_size) == (1, 48, 0)
    assert spec.params.moe_shared == 48 * (3 * h * 8192 + h * 16)  # shared expert (no gate) and router
    assert spec.params.attention == 48 * (2 * h * 5120 + 2 * h * 1024)  # qk norm is a weightless L2 norm
    assert not spec.tie_word_embeddings and spec.params.lm_head == spec.params.embedding
    # Three layers of four attend within 8192-token chunks; every fourth (NoPE) layer is global.
    assert (spec.sliding_window, spec.sliding_window_layers, spec.full_attention_layers) == (8192, 36, 12)
    assert spec.kv_elements_per_token() == 2 * 8 * 128 * 12
    assert 0.85 * B < spec.params.vision < 0.9 * B  # 34-layer ViT, pixel-shuffle adapter, projector


def test_llama4_interleaved_moe_layers_use_the_dense_mlp_width() -> None:
    # Maverick-style: interleave_moe_layer_step 2, so odd layers are MoE and even ones dense (16384 wide).
    config = json.loads(_bundled_text("meta-llama/Llama-4-Scout-17B-16E-Instruct"))
    config["text_config"].update(interleave_moe_layer_step=2, num_local_experts=128)
    spec = spec_from_config(config, "test/maverick", "test")
    h = 5120
    assert (spec.moe_layers, spec.intermediate_size) == (24, 16384)
    assert spec.params.dense_mlp == 24 * 3 * h * 16384
    assert spec.params.experts == 24 * 128 * 3 * h * 8192
    assert spec.params.total / B == pytest.approx(400, rel=0.02)  # Llama-4-Maverick: 400B total
    assert spec.params.active / B == pytest.approx(17, rel=0.02)  # and 17B active


@pytest.mark.parametrize(
    ("model", "layers", "sliding", "window"),
    [
        ("google/gemma-2-2b-it", 26, 13, 4096),
        ("google/gemma-2-9b-it", 42, 21, 4096),
        ("google/gemma-2-27b-it", 46, 23, 4096),
        ("google/gemma-3-1b-it", 26, 22, 512),
        ("google/gemma-3-12b-it", 48, 40, 1024),
    ],
)
def test_gemma2_and_gemma3_local_layers(model: str, layers: int, sliding: int, window: int) -> None:
    spec = resolve_model(model).spec
    assert (spec.num_layers, spec.sliding_window_layers, spec.sliding_window) == (layers, sliding, window)
    assert spec.tie_word_embeddings and spec.params.lm_head == 0


def test_gemma2_norms_and_head_dims() -> None:
    g9 = resolve_model("google/gemma-2-9b-it").spec
    assert (g9.num_attention_heads, g9.num_kv_heads, g9.head_dim, g9.vocab_size) == (16, 8, 256, 256000)
    assert g9.params.other == 42 * 4 * 3584 + 3584  # input, post-attention, pre- and post-feedforward norms
    assert resolve_model("google/gemma-2-27b-it").spec.head_dim == 128  # not hidden / heads (144)


def test_gemma_v1_defaults_tied_embeddings_and_full_attention() -> None:
    spec = resolve_model("google/gemma-7b").spec
    assert (spec.num_attention_heads, spec.num_kv_heads, spec.head_dim) == (16, 16, 256)
    assert spec.tie_word_embeddings and spec.params.lm_head == 0  # config.json omits the key; GemmaConfig: true
    assert spec.sliding_window_layers == 0


@pytest.mark.parametrize(
    "model",
    ["mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mixtral-8x7B-Instruct-v0.1", "microsoft/Phi-3-mini-4k-instruct",
     "microsoft/phi-4", "meta-llama/Llama-3.2-3B-Instruct", "Qwen/Qwen2.5-72B-Instruct"],
)
def test_extended_models_without_local_attention(model: str) -> None:
    spec = resolve_model(model).spec
    assert (spec.sliding_window, spec.sliding_window_layers) == (None, 0)


def test_granite_and_llama32_shapes() -> None:
    granite = resolve_model("ibm-granite/granite-3.1-8b-instruct").spec
    assert granite.architecture == "GraniteForCausalLM" and granite.tie_word_embeddings
    assert granite.kv_elements_per_token() == 2 * 8 * 128 * 40
    llama = resolve_model("meta-llama/Llama-3.2-1B-Instruct").spec
    assert (llama.head_dim, llama.num_kv_heads, llama.num_layers) == (64, 8, 16) and llama.tie_word_embeddings


def test_r1_distill_qwen_1_5b_unties_embeddings() -> None:
    distill = resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B").spec
    qwen = resolve_model("Qwen/Qwen2.5-1.5B-Instruct").spec
    assert not distill.tie_word_embeddings and qwen.tie_word_embeddings
    assert distill.params.total - qwen.params.total == 151936 * 1536


@pytest.mark.parametrize(
    ("alias", "base", "context"),
    [
        ("Qwen/QwQ-32B", "Qwen/Qwen2.5-32B-Instruct", 40_960),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", "Qwen/Qwen2.5-32B-Instruct", 32_768),
        ("Qwen/Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct", 131_072),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "Qwen/Qwen2.5-7B-Instruct", 131_072),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "meta-llama/Llama-3.1-8B-Instruct", 131_072),
        ("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", "meta-llama/Llama-3.1-70B-Instruct", 131_072),
        ("google/gemma-2-9b", "google/gemma-2-9b-it", 8_192),
        ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistralai/Mistral-Small-3.2-24B-Instruct-2506", 131_072),
        ("meta-llama/Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Scout-17B-16E-Instruct", 10_485_760),
    ],
)
def test_extended_aliases_share_the_base_shape(alias: str, base: str, context: int) -> None:
    spec = resolve_model(alias).spec
    assert spec.id == alias and spec.source == f"bundled ({base} shape)"
    assert spec.params == resolve_model(base).spec.params
    assert spec.max_position_embeddings == context


@pytest.mark.parametrize(
    ("name", "hf_id", "quant", "base"),
    [
        ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "fp8",
         "meta-llama/Llama-3.3-70B-Instruct"),
        ("redhatai/llama-3.3-70b-instruct-fp8-dynamic", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "fp8",
         "meta-llama/Llama-3.3-70B-Instruct"),
        ("RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8",
         "RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8", "int8",
         "mistralai/Mistral-Small-3.1-24B-Instruct-2503"),
        ("RedHatAI/Qwen2.5-7B-Instruct-quantized.w4a16", "RedHatAI/Qwen2.5-7B-Instruct-quantized.w4a16", "gptq",
         "Qwen/Qwen2.5-7B-Instruct"),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "fp8",
         "meta-llama/Meta-Llama-3.1-8B-Instruct"),
        ("nvidia/Llama-3.3-70B-Instruct-FP4", "nvidia/Llama-3.3-70B-Instruct-FP4", "nvfp4",
         "meta-llama/Llama-3.3-70B-Instruct"),
        ("nvidia/Llama-4-Scout-17B-16E-Instruct-FP8", "nvidia/Llama-4-Scout-17B-16E-Instruct-FP8", "fp8",
         "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
        ("RedHatAI/gemma-2-9b-it-FP8", "RedHatAI/gemma-2-9b-it-FP8", "fp8", "google/gemma-2-9b-it"),
        ("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
         "awq", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
        ("Qwen/Qwen2.5-72B-Instruct-AWQ", "Qwen/Qwen2.5-72B-Instruct-AWQ", "awq", "Qwen/Qwen2.5-72B-Instruct"),
        ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "gptq",
         "Qwen/Qwen2.5-7B-Instruct"),
        ("Qwen/Qwen2.5-32B-Instruct-FP8-dynamic", "Qwen/Qwen2.5-32B-Instruct-FP8-dynamic", "fp8",
         "Qwen/Qwen2.5-32B-Instruct"),
    ],
)
def test_third_party_prequantised_repos_take_base_shape_and_quant(name: str, hf_id: str, quant: str, base: str) -> None:
    resolved = resolve_model(name)
    assert (resolved.spec.id, resolved.default_quant, resolved.spec.checkpoint_quant) == (hf_id, quant, quant)
    assert resolved.spec.params == resolve_model(base).spec.params
    assert resolved.ollama_tag is None
    assert "embedding" in resolved.spec.bf16_modules and "attention" not in resolved.spec.bf16_modules


def test_bitsandbytes_reuploads_are_not_catalogued(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="unknown model 'unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit'"):
        resolve_model("unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit")


def test_catalog_ids_keep_their_own_bare_names() -> None:
    # The org-prefixed re-upload aliases must not capture the bare names of the originals.
    assert resolve_model("gemma-2-9b-it").spec.id == "google/gemma-2-9b-it"
    assert resolve_model("llama-3.2-3b-instruct").spec.id == "meta-llama/Llama-3.2-3B-Instruct"
    assert resolve_model("Mixtral-8x7B-Instruct-v0.1").spec.id == "mistralai/Mixtral-8x7B-Instruct-v0.1"


@pytest.mark.parametrize(
    ("tag", "hf_id", "quant"),
    [
        ("llama3.2:1b", "meta-llama/Llama-3.2-1B-Instruct", "q4_k_m"),
        ("llama3.2:3b", "meta-llama/Llama-3.2-3B-Instruct", "q4_k_m"),
        ("llama3.2", "meta-llama/Llama-3.2-3B-Instruct", "q4_k_m"),
        ("qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "q4_k_m"),
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct", "q4_k_m"),
        ("qwen2.5:3b", "Qwen/Qwen2.5-3B-Instruct", "q4_k_m"),
        ("qwen2.5:14b", "Qwen/Qwen2.5-14B-Instruct", "q4_k_m"),
        ("qwen2.5:32b", "Qwen/Qwen2.5-32B-Instruct", "q4_k_m"),
        ("qwen2.5:72b-instruct-q8_0", "Qwen/Qwen2.5-72B-Instruct", "q8_0"),
        ("qwen2.5-coder:7b", "Qwen/Qwen2.5-Coder-7B-Instruct", "q4_k_m"),
        ("qwen2.5-coder:32b", "Qwen/Qwen2.5-Coder-32B-Instruct", "q4_k_m"),
        ("qwq:32b", "Qwen/QwQ-32B", "q4_k_m"),
        ("mistral:7b", "mistralai/Mistral-7B-Instruct-v0.3", "q4_0"),
        ("mixtral:8x7b", "mistralai/Mixtral-8x7B-Instruct-v0.1", "q4_0"),
        ("phi3:mini", "microsoft/Phi-3-mini-4k-instruct", "q4_0"),
        ("phi3:3.8b-mini-4k-instruct-q4_K_M", "microsoft/Phi-3-mini-4k-instruct", "q4_k_m"),
        ("phi4:14b", "microsoft/phi-4", "q4_k_m"),
        ("gemma2:2b", "google/gemma-2-2b-it", "q4_0"),
        ("gemma2:9b", "google/gemma-2-9b-it", "q4_0"),
        ("gemma2:27b", "google/gemma-2-27b-it", "q4_0"),
        ("gemma3:1b", "google/gemma-3-1b-it", "q4_k_m"),
        ("gemma3:12b", "google/gemma-3-12b-it", "q4_k_m"),
        ("codellama:7b", "codellama/CodeLlama-7b-Instruct-hf", "q4_0"),
        ("granite3.1-dense:2b", "ibm-granite/granite-3.1-2b-instruct", "q4_k_m"),
        ("granite3.1-dense:8b", "ibm-granite/granite-3.1-8b-instruct", "q4_k_m"),
        ("llama4:scout", "meta-llama/Llama-4-Scout-17B-16E-Instruct", "q4_k_m"),
        ("deepseek-r1:1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "q4_k_m"),
        ("deepseek-r1:7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "q4_k_m"),
        ("deepseek-r1:32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "q4_k_m"),
        ("mistral-small3.1:24b", "mistralai/Mistral-Small-3.1-24B-Instruct-2503", "q4_k_m"),
    ],
)
def test_extended_ollama_tags(tag: str, hf_id: str, quant: str) -> None:
    resolved = resolve_model(tag)
    assert (resolved.spec.id, resolved.default_quant) == (hf_id, quant)
    assert resolved.ollama_tag == (tag if ":" in tag else f"{tag}:latest")


@pytest.mark.parametrize(
    ("model", "published"),
    [
        ("facebook/opt-125m", 0.125),
        ("mistralai/Mistral-Nemo-Instruct-2407", 12.2),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.1),
        ("google/gemma-2b", 2.51),
        ("google/gemma-7b-it", 8.54),
        ("meta-llama/Meta-Llama-3-8B-Instruct", 8.03),
        ("meta-llama/Meta-Llama-3-70B-Instruct", 70.6),
        ("meta-llama/Llama-2-7b-chat-hf", 6.74),
        ("mistralai/Mistral-7B-Instruct-v0.2", 7.24),
        ("mistralai/Mistral-7B-Instruct-v0.1", 7.24),
        ("Qwen/Qwen2-7B-Instruct", 7.62),
        ("microsoft/Phi-3.5-mini-instruct", 3.82),
        ("ibm-granite/granite-3.3-8b-instruct", 8.17),
    ],
)
def test_more_popular_models_match_published(model: str, published: float) -> None:
    assert params(model).total / B == pytest.approx(published, rel=0.01)


def test_opt_learned_positions_biases_and_tied_embeddings() -> None:
    spec = resolve_model("facebook/opt-125m").spec
    p, h = spec.params, 768
    assert p.total == 125_239_296  # facebook/opt-125m parameter count
    assert spec.tie_word_embeddings and p.lm_head == 0  # no tie key in config.json: PretrainedConfig default
    assert spec.intermediate_size == 3072  # from ffn_dim
    assert p.other == 12 * 4 * h + 2 * h + 2050 * h  # two LayerNorms a layer, the final one, 2048 + 2 positions
    assert spec.kv_elements_per_token() == 2 * 12 * 64 * 12


def test_llama3_and_llama2_aliases_change_only_context_and_vocab() -> None:
    llama3 = resolve_model("meta-llama/Meta-Llama-3-8B-Instruct").spec
    assert llama3.max_position_embeddings == 8192
    assert llama3.params == resolve_model("meta-llama/Llama-3.1-8B-Instruct").spec.params
    llama2 = resolve_model("meta-llama/Llama-2-7b-hf").spec
    assert (llama2.vocab_size, llama2.max_position_embeddings, llama2.num_kv_heads) == (32000, 4096, 32)


def test_mistral_v01_slides_a_window_that_v02_and_v03_dropped() -> None:
    v1 = resolve_model("mistralai/Mistral-7B-Instruct-v0.1").spec
    assert (v1.sliding_window, v1.sliding_window_layers, v1.vocab_size) == (4096, 32, 32000)
    v2 = resolve_model("mistralai/Mistral-7B-Instruct-v0.2").spec
    assert (v2.sliding_window, v2.sliding_window_layers, v2.vocab_size) == (None, 0, 32000)


def test_phi3_window_is_not_treated_as_local_attention() -> None:
    # Phi-3-mini-4k's 2047-token window sits under its 4096 context; the catalog plans it as full attention.
    for model in ("microsoft/Phi-3-mini-4k-instruct", "microsoft/Phi-3.5-mini-instruct"):
        spec = resolve_model(model).spec
        assert spec.sliding_window_layers == 0 and spec.kv_elements_per_token() == 2 * 32 * 96 * 32


@pytest.mark.parametrize(
    ("tag", "hf_id", "quant"),
    [
        ("llama3:8b", "meta-llama/Meta-Llama-3-8B-Instruct", "q4_0"),
        ("llama3:70b", "meta-llama/Meta-Llama-3-70B-Instruct", "q4_0"),
        ("llama2:7b", "meta-llama/Llama-2-7b-chat-hf", "q4_0"),
        ("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "q4_0"),
        ("gemma:2b", "google/gemma-2b-it", "q4_0"),
        ("gemma:7b", "google/gemma-7b-it", "q4_0"),
        ("phi3.5:3.8b", "microsoft/Phi-3.5-mini-instruct", "q4_0"),
        ("mistral-nemo:12b", "mistralai/Mistral-Nemo-Instruct-2407", "q4_0"),
        ("qwen2:7b", "Qwen/Qwen2-7B-Instruct", "q4_0"),
        ("granite3.3:8b", "ibm-granite/granite-3.3-8b-instruct", "q4_k_m"),
        ("deepseek-r1:8b", "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "q4_k_m"),
        ("deepseek-r1", "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "q4_k_m"),
    ],
)
def test_more_ollama_tags(tag: str, hf_id: str, quant: str) -> None:
    resolved = resolve_model(tag)
    assert (resolved.spec.id, resolved.default_quant) == (hf_id, quant)


def test_llama4_maverick_interleaves_moe_and_dense_layers() -> None:
    spec = resolve_model("meta-llama/Llama-4-Maverick-17B-128E-Instruct").spec
    assert (spec.num_experts, spec.experts_per_token, spec.moe_layers, spec.intermediate_size) == (128, 1, 24, 16384)
    assert (spec.sliding_window, spec.sliding_window_layers) == (8192, 36)  # default no_rope_layer_interval 4
    assert spec.params.total / B == pytest.approx(400, rel=0.01)  # model card: 400B total
    assert spec.params.active / B == pytest.approx(17, rel=0.015)  # and 17B active
    fp8 = resolve_model("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8")
    assert (fp8.default_quant, fp8.spec.params) == ("fp8", spec.params)
    assert resolve_model("llama4:maverick").spec.id == "meta-llama/Llama-4-Maverick-17B-128E-Instruct"

"""`plan -m org/name` for any Hub repo: metadata and safetensors headers through the real huggingface_hub
client against the local Hub-shaped server (conftest's `hub_server`), never a weight downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubRepo, HubServer, safetensors_file, tensor_bytes
from sparkserve.errors import UserError
from sparkserve.hardware.catalog import get_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.plan.memory import weight_bytes
from sparkserve.plan.quant import weight_format
from sparkserve.stack.load import load_stack
from sparkserve.stack.stackplan import plan_stack

HIDDEN, LAYERS, EXPERTS, WIDTH, VOCAB = 256, 2, 4, 128, 1000
CONFIG = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "intermediate_size": 512, "moe_intermediate_size": WIDTH, "num_experts": EXPERTS, "num_experts_per_tok": 2,
    "vocab_size": VOCAB, "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
# ModelOpt's description of an NVFP4 checkpoint whose attention stays BF16
HF_QUANT = {"producer": {"name": "modelopt", "version": "0.37.0"},
            "quantization": {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head", "*self_attn*"]}}


def _nvfp4(name: str, rows: int, cols: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """ModelOpt NVFP4 linear: two FP4 values per byte, an FP8 scale per 16, a global fp32 scale."""
    return {f"{name}.weight": ("U8", (rows, cols // 2)), f"{name}.weight_scale": ("F8_E4M3", (rows, cols // 16)),
            f"{name}.weight_scale_2": ("F32", ()), f"{name}.input_scale": ("F32", ())}


def _checkpoint() -> dict[str, tuple[str, tuple[int, ...]]]:
    t: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": ("BF16", (VOCAB, HIDDEN))}
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        for proj, shape in (("q_proj", (256, HIDDEN)), ("k_proj", (128, HIDDEN)), ("v_proj", (128, HIDDEN)),
                            ("o_proj", (HIDDEN, 256))):
            t[f"{p}.self_attn.{proj}.weight"] = ("BF16", shape)
        t[f"{p}.self_attn.q_norm.weight"] = ("BF16", (64,))
        t[f"{p}.self_attn.k_norm.weight"] = ("BF16", (64,))
        t[f"{p}.input_layernorm.weight"] = ("BF16", (HIDDEN,))
        t[f"{p}.post_attention_layernorm.weight"] = ("BF16", (HIDDEN,))
        t[f"{p}.mlp.gate.weight"] = ("BF16", (EXPERTS, HIDDEN))
        for e in range(EXPERTS):
            t.update(_nvfp4(f"{p}.mlp.experts.{e}.gate_proj", WIDTH, HIDDEN))
            t.update(_nvfp4(f"{p}.mlp.experts.{e}.up_proj", WIDTH, HIDDEN))
            t.update(_nvfp4(f"{p}.mlp.experts.{e}.down_proj", HIDDEN, WIDTH))
    t["model.norm.weight"] = ("BF16", (HIDDEN,))
    t["lm_head.weight"] = ("BF16", (VOCAB, HIDDEN))
    t["mtp.fc.weight"] = ("BF16", (HIDDEN, 2 * HIDDEN))  # an MTP head: shipped, not loaded by default
    return t


TENSORS = _checkpoint()
LOADED_BYTES = sum(tensor_bytes(d, s) for n, (d, s) in TENSORS.items() if not n.startswith("mtp."))


def _sharded_repo(repo_id: str, **kwargs) -> HubRepo:
    names = list(TENSORS)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    files: dict = {"config.json": json.dumps(CONFIG).encode(), "hf_quant_config.json": json.dumps(HF_QUANT).encode(),
                   "generation_config.json": b'{"temperature": 0.7}'}
    weight_map = {}
    for shard, members in shards.items():
        files[shard] = safetensors_file({n: TENSORS[n] for n in members})
        weight_map.update(dict.fromkeys(members, shard))
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return HubRepo(repo_id, files, **kwargs)


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkserve.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})}, cwd=cwd)


def test_weights_are_the_sum_of_the_real_tensors_without_downloading_them(hub_server: HubServer) -> None:
    hub_server.add(_sharded_repo("acme/Mixed-NVFP4"))
    before = len(hub_server.requests)
    resolved = resolve_model("acme/Mixed-NVFP4")
    spec = resolved.spec
    assert resolved.default_quant == "nvfp4"  # from hf_quant_config.json
    assert weight_bytes(spec, weight_format("nvfp4"), "vllm") == LOADED_BYTES
    assert dict(spec.checkpoint_bytes)["mtp"] == tensor_bytes("BF16", (HIDDEN, 2 * HIDDEN))
    # NVFP4 experts priced from their packed bytes and scales, attention at BF16 as stored
    experts = sum(tensor_bytes(d, s) for n, (d, s) in TENSORS.items() if ".experts." in n)
    assert dict(spec.checkpoint_bytes)["experts"] == experts
    served = [r for r in hub_server.requests[before:] if r.path.endswith(".safetensors") and r.method == "GET"]
    assert served and all(r.range for r in served)  # headers by range request only
    shards = sum(f.size for n, f in hub_server.repos["acme/Mixed-NVFP4"].files.items() if n.endswith(".safetensors"))
    assert sum(r.body_bytes for r in served) <= 2 * 100_001 < shards  # the client's first 100 kB of each shard


def test_second_plan_is_served_from_the_cache_offline(hub_server: HubServer) -> None:
    hub_server.add(_sharded_repo("acme/Cached-Once"))
    first = _cli("plan", "-m", "acme/Cached-Once", "--hardware", "dgx-spark", "--json")
    assert first.returncode == 0, first.stderr
    before = len(hub_server.requests)
    second = _cli("plan", "-m", "acme/Cached-Once", "--hardware", "dgx-spark", "--json", "--offline")
    assert second.returncode == 0, second.stderr
    assert len(hub_server.requests) == before  # nothing asked of the Hub
    assert json.loads(second.stdout)["memory"] == json.loads(first.stdout)["memory"]
    assert json.loads(second.stdout)["quant"] == "nvfp4"


def test_offline_with_nothing_cached_says_so_in_one_line(hub_server: HubServer) -> None:
    hub_server.add(_sharded_repo("acme/Never-Fetched"))
    before = len(hub_server.requests)
    result = _cli("plan", "-m", "acme/Never-Fetched", "--offline")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "offline and nothing cached" in result.stderr
    assert len(hub_server.requests) == before


def test_gated_repo_names_the_fix_and_reads_hf_token_from_dotenv(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.add(_sharded_repo("acme/Gated", gated=True, granted_tokens=frozenset({"hf_granted"})))
    refused = _cli("plan", "-m", "acme/Gated", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "gated" in refused.stderr and "HF_TOKEN" in refused.stderr
    assert "https://huggingface.co/acme/Gated" in refused.stderr
    (tmp_path / ".env").write_text("HF_TOKEN=hf_granted\n")
    granted = _cli("plan", "-m", "acme/Gated", "--json", cwd=tmp_path)
    assert granted.returncode == 0, granted.stderr
    assert "hf_granted" not in granted.stdout + granted.stderr
    assert any(r.token == "hf_granted" for r in hub_server.requests)


def test_wrong_token_is_told_apart_from_no_token(hub_server: HubServer) -> None:
    hub_server.add(_sharded_repo("acme/Gated-Too", gated=True, granted_tokens=frozenset({"hf_granted"})))
    result = _cli("plan", "-m", "acme/Gated-Too", env={"HF_TOKEN": "hf_other"})
    assert result.returncode == 2 and "not been granted access" in result.stderr
    assert "hf_other" not in result.stderr


def test_revision_pins_a_commit(hub_server: HubServer) -> None:
    repo = hub_server.add(_sharded_repo("acme/Tagged", revisions=("main", "v1")))
    spec = resolve_model("acme/Tagged@v1").spec
    assert spec.id == "acme/Tagged@v1" and repo.commit[:12] in spec.source
    with pytest.raises(UserError, match="revision 'v9' not found"):
        resolve_model("acme/Tagged@v9")


def test_unknown_repo_names_the_closest_known_models() -> None:
    with pytest.raises(UserError, match=r"^unknown model 'Qwen/Qwen3-33B'; closest: Qwen/Qwen3-32B"):
        resolve_model("Qwen/Qwen3-33B")


def test_repo_without_config_is_refused(hub_server: HubServer) -> None:
    hub_server.add(HubRepo("acme/Only-GGUF", {"model-Q4_K_M.gguf": b"GGUF"}))
    with pytest.raises(UserError, match="no config.json"):
        resolve_model("acme/Only-GGUF")


def test_local_directory_uses_its_safetensors_headers(tmp_path: Path) -> None:
    files = _sharded_repo("acme/local").files
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.read(0, content.size)
        (tmp_path / name).write_bytes(data)
    resolved = resolve_model(str(tmp_path))
    assert resolved.default_quant == "nvfp4"
    assert weight_bytes(resolved.spec, weight_format("nvfp4"), "vllm") == LOADED_BYTES


def test_a_stacks_hf_cache_is_searched_before_the_hub(tmp_path: Path, hub_server: HubServer) -> None:
    snapshot = tmp_path / "hf" / "hub" / "models--acme--In-Stack-Cache" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(CONFIG))
    stack_file = tmp_path / "sparkserve.toml"
    stack_file.write_text(f'[stack]\nhardware = "dgx-spark"\nhf_cache = "{tmp_path / "hf"}"\n\n'
                          '[services.v]\nengine = "vllm"\nmodel = "acme/In-Stack-Cache"\nport = 8000\n')
    before = len(hub_server.requests)
    plan = plan_stack(load_stack(stack_file), get_profile("dgx-spark"))
    assert plan.services[0].deployment.model.num_experts == EXPERTS
    assert len(hub_server.requests) == before  # found in the stack's cache, the Hub never asked


def test_modelopt_mixed_precision_is_priced_from_its_headers(hub_server: HubServer) -> None:
    mixed = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "MIXED_PRECISION"}}
    repo = _sharded_repo("acme/Mixed-Precision")
    repo.files["hf_quant_config.json"] = json.dumps(mixed).encode()
    hub_server.add(repo)
    resolved = resolve_model("acme/Mixed-Precision")
    assert resolved.default_quant == "nvfp4"
    assert weight_bytes(resolved.spec, weight_format("nvfp4"), "vllm") == LOADED_BYTES


def test_latent_attention_repo_with_an_mtp_layer_from_the_hub(hub_server: HubServer) -> None:
    """A DeepSeek-V3-shaped checkpoint (FP8 blocks with their scales): the MTP layer, numbered past the last
    decoder layer, is shipped but not loaded; the KV cache is the latent."""
    config = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 256,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
              "intermediate_size": 512, "moe_intermediate_size": 128, "n_routed_experts": 4, "n_shared_experts": 1,
              "num_experts_per_tok": 2, "first_k_dense_replace": 1, "kv_lora_rank": 64, "q_lora_rank": 96,
              "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32, "num_nextn_predict_layers": 1,
              "max_position_embeddings": 4096, "quantization_config": {"quant_method": "fp8",
                                                                         "weight_block_size": [128, 128]}}
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": ("BF16", (VOCAB, HIDDEN)),
                                                       "lm_head.weight": ("BF16", (VOCAB, HIDDEN))}
    for layer in range(3):  # layer 2 is the MTP module
        p = f"model.layers.{layer}"
        tensors[f"{p}.self_attn.kv_a_proj_with_mqa.weight"] = ("F8_E4M3", (64 + 16, HIDDEN))
        tensors[f"{p}.self_attn.kv_a_proj_with_mqa.weight_scale_inv"] = ("F32", (1, 2))
        tensors[f"{p}.self_attn.o_proj.weight"] = ("F8_E4M3", (HIDDEN, 4 * 32))
        tensors[f"{p}.mlp.experts.0.down_proj.weight"] = ("F8_E4M3", (HIDDEN, 128))
    hub_server.add(HubRepo("acme/Latent-MTP", {"config.json": json.dumps(config).encode(),
                                               "model.safetensors": safetensors_file(tensors)}))
    spec = resolve_model("acme/Latent-MTP").spec
    mtp = sum(tensor_bytes(d, s) for n, (d, s) in tensors.items() if n.startswith("model.layers.2."))
    loaded = sum(tensor_bytes(d, s) for d, s in tensors.values()) - mtp
    assert dict(spec.checkpoint_bytes)["mtp"] == mtp
    assert weight_bytes(spec, weight_format("fp8"), "vllm") == loaded
    assert spec.is_mla and spec.kv_elements_per_token() == 2 * (64 + 16)


def test_weights_outside_the_root_checkpoint_fall_back_to_the_estimate(hub_server: HubServer) -> None:
    hub_server.add(HubRepo("acme/Consolidated", {"config.json": json.dumps(CONFIG).encode(),
                                                 "consolidated.safetensors": safetensors_file(TENSORS)}))
    spec = resolve_model("acme/Consolidated").spec
    assert spec.checkpoint_bytes == () and spec.params.experts > 0

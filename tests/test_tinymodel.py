"""The tiny demo model: a complete, well-formed, deterministic HF model directory.

These tests need only `tokenizers` (no vLLM, torch, transformers or numpy).
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from sparkserve.demo.tinymodel import CHAT_TEMPLATE, STAMP_FILE, write_tiny_model

MODEL_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """Parse a safetensors file by hand: (header without __metadata__, data bytes)."""
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen])
    header.pop("__metadata__", None)
    return header, raw[8 + hlen :]


def bf16_values(data: bytes) -> list[float]:
    """BF16 little-endian -> Python floats (BF16 is the high half of a float32)."""
    n = len(data) // 2
    halves = struct.unpack(f"<{n}H", data)
    return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *(h << 16 for h in halves))))


def expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, hd, inter = cfg["hidden_size"], cfg["head_dim"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * hd
    kv = cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (cfg["vocab_size"], h), "model.norm.weight": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "self_attn.q_norm.weight": (hd,),
            p + "self_attn.k_norm.weight": (hd,),
            p + "mlp.gate_proj.weight": (inter, h),
            p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
        }
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (cfg["vocab_size"], h)
    return shapes


# --- completeness and format ---------------------------------------------------------


def test_directory_holds_every_file(model_dir: Path) -> None:
    for name in MODEL_FILES + [STAMP_FILE]:
        assert (model_dir / name).is_file(), name
        assert (model_dir / name).stat().st_size > 0, name
    assert not [p.name for p in model_dir.iterdir() if ".tmp-" in p.name]


def test_config_is_a_small_qwen3(model_dir: Path) -> None:
    cfg = read_json(model_dir / "config.json")
    assert cfg["architectures"] == ["Qwen3ForCausalLM"]
    assert cfg["model_type"] == "qwen3"
    assert cfg["vocab_size"] == 4096
    assert cfg["hidden_size"] == 128
    assert cfg["num_hidden_layers"] == 2
    assert cfg["num_attention_heads"] == 4
    assert cfg["num_key_value_heads"] == 2
    assert cfg["head_dim"] == 32
    assert cfg["intermediate_size"] == 384
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    assert cfg["max_position_embeddings"] >= 2048
    assert cfg["torch_dtype"] == "bfloat16"
    assert cfg["tie_word_embeddings"] is True
    assert cfg["hidden_act"] == "silu"


def test_safetensors_lists_every_tensor_with_config_shapes(model_dir: Path) -> None:
    cfg = read_json(model_dir / "config.json")
    header, data = read_safetensors(model_dir / "model.safetensors")
    want = expected_shapes(cfg)
    assert {k: tuple(v["shape"]) for k, v in header.items()} == want
    assert "lm_head.weight" not in header  # tied to embed_tokens
    # Offsets: BF16-sized, contiguous, covering the data exactly.
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    assert spans[0][0] == 0
    assert spans[-1][1] == len(data)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end == start
    for name, v in header.items():
        assert v["dtype"] == "BF16", name
        start, end = v["data_offsets"]
        assert end - start == 2 * math.prod(v["shape"]), name


def test_header_is_8_byte_aligned(model_dir: Path) -> None:
    raw = (model_dir / "model.safetensors").read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    assert hlen % 8 == 0
    assert raw[8:9] == b"{"


def test_weights_are_finite_with_a_sane_scale(model_dir: Path) -> None:
    header, data = read_safetensors(model_dir / "model.safetensors")
    for name, v in header.items():
        start, end = v["data_offsets"]
        vals = bf16_values(data[start : min(end, start + 2 * 4096)])  # a sample of each
        assert all(math.isfinite(x) for x in vals), name
        if name.endswith("norm.weight"):
            assert set(vals) == {1.0}, name
        else:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((x - mean) ** 2 for x in vals) / len(vals))
            assert abs(mean) < 0.005, name
            assert 0.01 < std < 0.04, (name, std)
            assert max(abs(x) for x in vals) < 0.2, name


def test_tokenizer_round_trips_text(model_dir: Path) -> None:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cfg = read_json(model_dir / "config.json")
    assert 1000 < tok.get_vocab_size() <= cfg["vocab_size"]
    for text in [
        "Hello, world! The GPU server answered in 12.5 ms.",
        "  leading spaces, tabs\tand\nnew lines\n",
        "café naïve 日本語 😀 → ±3 °C",
        'def f(x):\n    return {"k": x ** 2}\n',
    ]:
        enc = tok.encode(text)
        assert enc.ids
        assert max(enc.ids) < cfg["vocab_size"]
        assert tok.decode(enc.ids, skip_special_tokens=False) == text


def test_tokenizer_special_tokens(model_dir: Path) -> None:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cfg = read_json(model_dir / "config.json")
    gen = read_json(model_dir / "generation_config.json")
    ids = {t: tok.token_to_id(t) for t in SPECIALS}
    assert all(i is not None for i in ids.values()), ids
    added = {t["content"]: t for t in read_json(model_dir / "tokenizer.json")["added_tokens"]}
    for t in SPECIALS:
        assert added[t]["special"] is True
        assert tok.encode(t).ids == [ids[t]]  # one token, never split
    chat = "<|im_start|>user\nhi<|im_end|>\n"
    enc = tok.encode(chat)
    assert enc.ids[0] == ids["<|im_start|>"]
    assert ids["<|im_end|>"] in enc.ids
    assert tok.decode(enc.ids, skip_special_tokens=True) == "user\nhi\n"
    assert cfg["eos_token_id"] == ids["<|im_end|>"]
    assert ids["<|im_end|>"] in gen["eos_token_id"]
    assert gen["pad_token_id"] == ids["<|endoftext|>"]


def test_tokenizer_config_has_chat_template(model_dir: Path) -> None:
    tc = read_json(model_dir / "tokenizer_config.json")
    assert tc["tokenizer_class"] in {"PreTrainedTokenizerFast", "Qwen2TokenizerFast"}
    assert tc["eos_token"] == "<|im_end|>"
    assert tc["pad_token"] == "<|endoftext|>"
    assert tc["chat_template"] == CHAT_TEMPLATE
    for needle in ("<|im_start|>", "<|im_end|>", "messages", "add_generation_prompt", "assistant"):
        assert needle in tc["chat_template"], needle
    decoder = {int(k): v["content"] for k, v in tc["added_tokens_decoder"].items()}
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert decoder == {tok.token_to_id(t): t for t in SPECIALS}


def test_other_sizes(tmp_path: Path) -> None:
    d = write_tiny_model(tmp_path / "m", vocab_size=1024, hidden_size=64, num_layers=1, seed=3)
    cfg = read_json(d / "config.json")
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]) == (1024, 64, 1)
    assert cfg["num_attention_heads"] * cfg["head_dim"] == 64
    header, _ = read_safetensors(d / "model.safetensors")
    assert {k: tuple(v["shape"]) for k, v in header.items()} == expected_shapes(cfg)
    assert Tokenizer.from_file(str(d / "tokenizer.json")).get_vocab_size() <= 1024


def test_longer_context_reaches_config_and_tokenizer(model_dir: Path, tmp_path: Path) -> None:
    """bench_agreement serves long prompts: the positions and the tokenizer's limit move together."""
    d = write_tiny_model(tmp_path / "m", max_position_embeddings=8192)
    assert read_json(d / "config.json")["max_position_embeddings"] == 8192
    assert read_json(d / "tokenizer_config.json")["model_max_length"] == 8192
    assert (d / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert read_json(model_dir / "config.json")["max_position_embeddings"] == 4096


@pytest.mark.parametrize(
    "kwargs",
    [{"hidden_size": 100}, {"hidden_size": 32}, {"vocab_size": 100}, {"num_layers": 0}, {"max_position_embeddings": 0}],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        write_tiny_model(tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


# --- determinism and idempotency -----------------------------------------------------


def test_same_seed_gives_identical_files(model_dir: Path, tmp_path: Path) -> None:
    other = write_tiny_model(tmp_path / "again", seed=0)
    for name in MODEL_FILES + [STAMP_FILE]:
        assert (other / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_other_seed_changes_weights_only(model_dir: Path, tmp_path: Path) -> None:
    other = write_tiny_model(tmp_path / "seed1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"]:
        assert (other / name).read_bytes() == (model_dir / name).read_bytes(), name


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.iterdir()}


def test_complete_directory_is_left_untouched(tmp_path: Path) -> None:
    d = write_tiny_model(tmp_path / "m", seed=5)
    before = _snapshot(d)
    assert write_tiny_model(d, seed=5) == d
    assert _snapshot(d) == before


def test_other_parameters_rewrite_the_directory(tmp_path: Path) -> None:
    d = write_tiny_model(tmp_path / "m", seed=5)
    weights = (d / "model.safetensors").read_bytes()
    write_tiny_model(d, seed=6)
    assert (d / "model.safetensors").read_bytes() != weights
    assert read_json(d / STAMP_FILE)["params"]["seed"] == 6


@pytest.mark.parametrize("damage", ["truncate", "delete", "no-stamp"])
def test_incomplete_directory_is_repaired(tmp_path: Path, damage: str) -> None:
    ref = write_tiny_model(tmp_path / "ref", seed=2)
    d = write_tiny_model(tmp_path / "m", seed=2)
    if damage == "truncate":
        p = d / "model.safetensors"
        p.write_bytes(p.read_bytes()[:1000])
    elif damage == "delete":
        (d / "tokenizer.json").unlink()
    else:
        (d / STAMP_FILE).unlink()
    write_tiny_model(d, seed=2)
    for name in MODEL_FILES + [STAMP_FILE]:
        assert (d / name).read_bytes() == (ref / name).read_bytes(), name


def test_needs_neither_torch_nor_transformers(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from sparkserve.demo import write_tiny_model\n"
        f"write_tiny_model(Path({str(tmp_path / 'm')!r}))\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'numpy', 'safetensors') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_command_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sparkserve.demo.tinymodel", str(tmp_path / "cli"), "--seed", "4"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == str(tmp_path / "cli")
    assert "Warning" not in out.stderr
    assert read_json(tmp_path / "cli" / STAMP_FILE)["params"]["seed"] == 4

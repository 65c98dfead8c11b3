"""Write a tiny, random-weight Qwen3 model directory that vLLM can serve with no download.

The directory holds what a Hugging Face checkpoint holds: ``config.json``,
``generation_config.json``, ``model.safetensors`` (BF16), ``tokenizer.json`` and
``tokenizer_config.json`` (with a ChatML chat template). The tokenizer is a byte-level BPE
trained on the spot on a deterministic, built-in corpus.

Only the ``tokenizers`` package is needed: no torch, transformers or numpy. Weights come
from :class:`random.Random` and the safetensors file is written by hand (8-byte little-endian
header length, JSON header, raw little-endian tensor bytes; BF16 is the high half of an
IEEE float32).

The output is deterministic for a given set of parameters, and a directory that already
holds a complete model of the same parameters is returned untouched.

Command line: ``python -m sparkserve.demo.tinymodel DIR [--seed N]``.
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
from array import array
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "STAMP_FILE",
    "TINYMODEL_FORMAT",
    "model_config",
    "write_tiny_model",
]

#: Bump when the output for the same parameters changes: older directories are rewritten.
TINYMODEL_FORMAT = 1

#: Written last; its presence (with matching parameters and file sizes) marks a complete model.
STAMP_FILE = "sparkserve-tinymodel.json"

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
#: In id order: the BPE trainer gives them ids 0, 1, 2.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

#: ChatML, as Qwen uses it (without tools or thinking).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

HEAD_DIM = 32
INIT_STD = 0.02
_CORPUS_SEED = 20240611  # the corpus (and so the tokenizer) does not depend on `seed`


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------


def model_config(*, vocab_size: int = 4096, hidden_size: int = 128, num_layers: int = 2,
                 max_position_embeddings: int = 4096) -> dict[str, Any]:
    """The ``config.json`` content for the given size (Qwen3 architecture)."""
    if hidden_size % HEAD_DIM or hidden_size < 2 * HEAD_DIM:
        raise ValueError(f"hidden_size must be a multiple of {HEAD_DIM} and >= {2 * HEAD_DIM}")
    if vocab_size < 512:
        raise ValueError("vocab_size must be >= 512 (256 byte tokens + specials + merges)")
    if num_layers < 1:
        raise ValueError("num_layers must be >= 1")
    if max_position_embeddings < 64:
        raise ValueError("max_position_embeddings must be >= 64")
    heads = hidden_size // HEAD_DIM
    kv_heads = max(1, heads // 2)
    eot, _, im_end = range(len(SPECIAL_TOKENS))
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 3 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": num_layers,
        "initializer_range": INIT_STD,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": im_end,
    }


def _tensor_specs(cfg: dict[str, Any]) -> list[tuple[str, tuple[int, ...], float | None]]:
    """(name, shape, std) in write order; std None means a norm weight filled with 1.0."""
    h = cfg["hidden_size"]
    hd = cfg["head_dim"]
    q = cfg["num_attention_heads"] * hd
    kv = cfg["num_key_value_heads"] * hd
    inter = cfg["intermediate_size"]
    specs: list[tuple[str, tuple[int, ...], float | None]] = [
        ("model.embed_tokens.weight", (cfg["vocab_size"], h), INIT_STD),
    ]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (h,), None),
            (p + "self_attn.q_proj.weight", (q, h), INIT_STD),
            (p + "self_attn.k_proj.weight", (kv, h), INIT_STD),
            (p + "self_attn.v_proj.weight", (kv, h), INIT_STD),
            (p + "self_attn.o_proj.weight", (h, q), INIT_STD),
            (p + "self_attn.q_norm.weight", (hd,), None),
            (p + "self_attn.k_norm.weight", (hd,), None),
            (p + "post_attention_layernorm.weight", (h,), None),
            (p + "mlp.gate_proj.weight", (inter, h), INIT_STD),
            (p + "mlp.up_proj.weight", (inter, h), INIT_STD),
            (p + "mlp.down_proj.weight", (h, inter), INIT_STD),
        ]
    specs.append(("model.norm.weight", (h,), None))
    if not cfg["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (cfg["vocab_size"], h), INIT_STD))
    return specs


# --------------------------------------------------------------------------------------
# weights: hand-written safetensors, BF16
# --------------------------------------------------------------------------------------


def _bf16_bytes(values: list[float]) -> bytes:
    """Little-endian BF16: the high 16 bits of each float32 (truncation)."""
    f32 = array("f", values)
    if sys.byteorder != "little":
        f32.byteswap()
    raw = f32.tobytes()
    out = bytearray(len(raw) // 2)
    out[0::2] = raw[2::4]
    out[1::2] = raw[3::4]
    return bytes(out)


def _safetensors_bytes(cfg: dict[str, Any], seed: int) -> bytes:
    rng = random.Random(seed)
    gauss = rng.gauss
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    chunks: list[bytes] = []
    offset = 0
    for name, shape, std in _tensor_specs(cfg):
        n = 1
        for d in shape:
            n *= d
        if std is None:
            data = _bf16_bytes([1.0]) * n
        else:
            data = _bf16_bytes([gauss(0.0, std) for _ in range(n)])
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)  # pad so the data starts 8-byte aligned
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


# --------------------------------------------------------------------------------------
# tokenizer: byte-level BPE trained on a built-in corpus
# --------------------------------------------------------------------------------------

_WORDS = """
the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there been one all we their has would when if so no will
what can out up more about some time them into only could new these other than then now
model token tokens server request requests latency throughput memory cache engine batch
prompt output input stream streaming first last second minute hour day week year data
GPU CPU core cores thread threads bandwidth compute kernel weight weights layer layers
attention head heads hidden vocab vocabulary sequence length context window decode prefill
queue running waiting finished success error errors metric metrics gauge counter histogram
bench benchmark result results report plan stack service services port host health ready
start stop restart load unload pull push image container volume network config settings
small large tiny huge fast slow quick careful simple complex random fixed open closed
red green blue yellow black white bright dark warm cold north south east west river
mountain forest city village garden house window door table chair book paper letter word
sentence story question answer reason idea plan method system process program function
value number string list array map key lock file folder path line column row field
""".split()

_SYLLABLES = (
    "ka ke ki ko ku ta te ti to tu na ne ni no nu ra re ri ro ru ma me mi mo mu sa se si so su "
    "la le li lo lu pa pe pi po pu ba be bi bo bu da de di do du ga ge gi go gu va ve vi vo vu "
    "an en in on un ar er ir or ur al el il ol ul ast est ist ost ust ing ion ent ant"
).split()

_UNICODE = ["café", "naïve", "über", "façade", "smörgåsbord", "日本語", "中文", "한국어", "Ελληνικά", "русский",
            "😀", "→", "±", "°C"]

_TEMPLATES = [
    "The {a} {n} was {v} by the {b} {m}.",
    "{A} {n} {v} {k} {m} in {d} ms, using {p}% of the {b} cache.",
    "Q: How many {n} does the {m} need? A: About {d}.",
    "def {f}({x}, {y}):\n    return {x} {op} {y}\n",
    '{{"{k}": {d}, "{x}": "{a}", "ok": true}}',
    "- {A} {n}: {d}.{e} {u}",
    "In {yr}, the {a} {m} served {d} {n} per second.",
    "{A}, {b}, and {c} {n} {v} together; {x} {y} {z}.",
    "# {A} {n}\n\n{A} {m} {v} {k} {n}.",
    "error: {x}_{y} failed with code {d} ({a} {n})",
]


def _corpus() -> list[str]:
    rng = random.Random(_CORPUS_SEED)
    pseudo = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(600)]
    words = _WORDS + pseudo
    ops = ["+", "-", "*", "/", "//", "%", "**", "==", "<=", ">="]
    units = ["GiB", "MiB", "tok/s", "ms", "s", "GB/s", "TFLOPS", "%"]

    def w() -> str:
        return rng.choice(words)

    lines: list[str] = []
    for i in range(6000):
        t = _TEMPLATES[i % len(_TEMPLATES)]
        lines.append(
            t.format(
                a=w(),
                b=w(),
                c=w(),
                n=w(),
                m=w(),
                v=w() + "ed",
                k=w(),
                x=w(),
                y=w(),
                z=w(),
                f=w() + "_" + w(),
                A=w().capitalize(),
                d=rng.randint(0, 99999),
                e=rng.randint(0, 99),
                p=rng.randint(0, 100),
                yr=rng.randint(1900, 2030),
                op=rng.choice(ops),
                u=rng.choice(units),
            )
        )
        if i % 50 == 0:
            lines.append(" ".join(rng.choice(_UNICODE) for _ in range(5)))
    return lines


def _train_tokenizer(vocab_size: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def _tokenizer_config(model_max_length: int) -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, t in enumerate(SPECIAL_TOKENS)
        },
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "split_special_tokens": False,
    }


# --------------------------------------------------------------------------------------
# the directory
# --------------------------------------------------------------------------------------


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(path: Path, params: dict[str, Any]) -> bool:
    stamp = _read_stamp(path)
    if not stamp or stamp.get("params") != params or not isinstance(stamp.get("files"), dict):
        return False
    for name, size in stamp["files"].items():
        try:
            if (path / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def write_tiny_model(
    path: Path,
    *,
    seed: int = 0,
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_layers: int = 2,
    max_position_embeddings: int = 4096,
) -> Path:
    """Write a servable tiny Qwen3 model (random BF16 weights, local BPE tokenizer) to ``path``.

    Returns ``path``. If ``path`` already holds a complete model written with the same
    parameters, nothing is written. Other files in ``path`` are left alone.
    """
    path = Path(path)
    params = {
        "format": TINYMODEL_FORMAT,
        "seed": seed,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "max_position_embeddings": max_position_embeddings,
    }
    if _is_complete(path, params):
        return path

    cfg = model_config(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                       max_position_embeddings=max_position_embeddings)
    tok = _train_tokenizer(vocab_size)
    if tok.get_vocab_size() > vocab_size:  # pragma: no cover - the trainer respects the cap
        raise RuntimeError("tokenizer larger than vocab_size")
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    if [ids[t] for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):  # pragma: no cover
        raise RuntimeError(f"unexpected special token ids {ids}")

    files: dict[str, bytes] = {
        "config.json": _json_bytes(cfg),
        "generation_config.json": _json_bytes(
            {
                "bos_token_id": ids[ENDOFTEXT],
                "eos_token_id": [ids[IM_END], ids[ENDOFTEXT]],
                "pad_token_id": ids[ENDOFTEXT],
            }
        ),
        "tokenizer.json": tok.to_str(pretty=True).encode() + b"\n",
        "tokenizer_config.json": _json_bytes(_tokenizer_config(max_position_embeddings)),
        "special_tokens_map.json": _json_bytes(
            {
                "additional_special_tokens": [IM_START, IM_END],
                "eos_token": IM_END,
                "pad_token": ENDOFTEXT,
            }
        ),
        "model.safetensors": _safetensors_bytes(cfg, seed),
    }

    path.mkdir(parents=True, exist_ok=True)
    (path / STAMP_FILE).unlink(missing_ok=True)
    for name, data in files.items():
        _write_atomic(path / name, data)
    stamp = {
        "generator": "sparkserve.demo.tinymodel",
        "params": params,
        "files": {name: len(data) for name, data in files.items()},
    }
    _write_atomic(path / STAMP_FILE, _json_bytes(stamp))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sparkserve.demo.tinymodel", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--num-layers", type=int, default=2)
    a = ap.parse_args(argv)
    out = write_tiny_model(
        a.path, seed=a.seed, vocab_size=a.vocab_size, hidden_size=a.hidden_size, num_layers=a.num_layers
    )
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

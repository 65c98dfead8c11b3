"""Weight bytes from safetensors headers: every tensor as stored (quantised blocks, scales, layers the
quantisation left alone), grouped the way the planner prices them. Reads headers only, never weights."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from sparkserve.errors import UserError

_TOWER_WORDS = ("visual", "vision", "audio", "multi_modal_projector", "mm_projector", "embed_vision", "embed_audio",
                "image_newline", "speech")
_MLP_WORDS = ("mlp", "feed_forward", "up_proj", "down_proj", "gate_proj", "fc1", "fc2", "w1", "w2", "w3")
HEADER_LIMIT = 100_000_000  # the safetensors format caps its JSON header at 100 MB (safetensors/src/tensor.rs)


def tensor_group(name: str, num_layers: int) -> str:
    """Which ParamCounts group a tensor belongs to, from its name (HF transformers naming)."""
    n = name.lower()
    group = _group_of_pattern(n.translate(_DIGITS))
    at = n.find("layers.")
    if at >= 0 and group != "vision":
        index = n[at + 7:].split(".", 1)[0]
        if index.isdigit() and int(index) >= num_layers:
            return "mtp"  # DeepSeek's MTP layer is numbered past the last decoder layer
    return group


_DIGITS = str.maketrans("0123456789", "##########")


@lru_cache(maxsize=4096)
def _group_of_pattern(n: str) -> str:
    """The group of a name with its numbers blanked: 90,000 tensors share a few hundred patterns."""
    if any(word in n for word in _TOWER_WORDS):
        return "vision"
    if n.startswith("mtp.") or ".mtp." in n:
        return "mtp"
    if "lm_head" in n or n.startswith(("output.", "head.")):  # DeepSeek-V4's checkpoint: embed.* and head.*
        return "lm_head"
    if "embed_tokens_per_layer" in n:
        return "per_layer_embedding"  # Gemma 4's per-layer input embeddings: looked up, one row per token
    if "embed_tokens" in n or ".wte." in n or "tok_embeddings" in n or n.startswith(("embeddings", "embed.")):
        return "embedding"
    if "shared_expert" in n:
        return "moe_shared"
    if ".experts." in n or n.endswith(".experts"):
        return "experts"
    if re.search(r"\.(gate|router)\.", n) or "e_score_correction" in n:
        return "moe_shared"
    last = n.rsplit(".", 2)[-2] if n.count(".") >= 1 else n
    if "norm" in last and last not in ("q_norm", "k_norm"):
        return "other"
    if any(re.search(rf"(^|\.){word}(\.|_|$)", n) for word in _MLP_WORDS):
        return "dense_mlp"
    return "attention"


def group_bytes(tensors: Iterable[tuple[str, int]], num_layers: int) -> dict[str, int]:
    """Sum (name, bytes) pairs per group."""
    out: dict[str, int] = {}
    for name, size in tensors:
        group = tensor_group(name, num_layers)
        out[group] = out.get(group, 0) + size
    return out


def read_header(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (dtype, bytes) from one local .safetensors file's header."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > HEADER_LIMIT:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from exc
    out: dict[str, tuple[str, int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = (str(info["dtype"]), int(end) - int(start))
    return out


def local_tensor_bytes(folder: Path) -> list[tuple[str, int]]:
    """(name, bytes) of every tensor of the safetensors checkpoint in `folder`; [] when there is none or
    when shards the index lists are missing (a partial download: the estimate from the config is better)."""
    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            listed = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError):
            return []
        if not listed or any(not (folder / shard).is_file() for shard in listed):
            return []
    tensors: list[tuple[str, int]] = []
    for file in files:
        tensors.extend((name, size) for name, (_, size) in read_header(file).items())
    return tensors

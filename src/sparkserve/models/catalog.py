"""Find a model's config by whatever name the user typed: a path, a HF id, an alias, an Ollama tag."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from sparkserve.errors import UserError, unknown
from sparkserve.models import hub, ollama_registry, weights
from sparkserve.models.aliases import ALIASES, OLLAMA, OLLAMA_QUANT_WORDS, QUANT_SUFFIXES
from sparkserve.models.config import spec_from_config, with_checkpoint_quant
from sparkserve.models.spec import ModelSpec

_HINT = "point --model at a directory holding config.json"
_GGUF_QUANT = re.compile(r"^(i?q\d\w*|f16|fp16|bf16|f32|fp32|mxfp4|fp8|int4|int8)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    default_quant: str | None  # weight format to plan with unless the user picks one ("fp8", "q4_k_m", ...)
    ollama_tag: str | None  # set when the name was an Ollama tag; the runtime pulls this


def resolve_model(name: str, *, hf_home: str | Path | None = None) -> ResolvedModel:
    """Local path first (the user's files win), then the bundled catalog and Ollama tags, then the HF cache
    (`hf_home`, a stack's hf_cache, before the environment's), then the Hub's metadata (sparkserve's cache
    of it first). `org/name@revision` skips the catalog."""
    name = name.strip()
    repo, revision = hub.split_revision(name)
    found = _from_path(name)
    if found is None and revision is None:
        found = _from_catalog(name) or _from_ollama(name)
    for cache_dir in _hub_dirs(hf_home):
        found = found or _from_hf_cache(repo, revision, cache_dir)
    found = found or _from_hub(repo, revision)
    if found is None:
        raise unknown("model", name, _known_names(), hint=_HINT)
    return found


def _from_hub(repo: str, revision: str | None) -> ResolvedModel | None:
    if not hub.is_repo_id(repo):
        return None
    try:
        meta = hub.fetch(repo, revision)
    except hub.RepoNotFound:
        raise unknown("model", repo, _known_names(),
                      hint="not on the Hub either (private? set HF_TOKEN); " + _HINT) from None
    spec = spec_from_config(meta.config, repo if revision is None else f"{repo}@{revision}", meta.source)
    if meta.group_bytes:
        spec = dataclasses.replace(spec, checkpoint_bytes=tuple(sorted(meta.group_bytes.items())))
    return ResolvedModel(spec, spec.checkpoint_quant, None)


def with_tensor_bytes(spec: ModelSpec, tensors: Iterable[tuple[str, int]]) -> ModelSpec:
    """The spec with its weights priced from the real tensors (nothing changes without any)."""
    groups = weights.group_bytes(tensors, spec.num_layers)
    if not groups:
        return spec
    return dataclasses.replace(spec, checkpoint_bytes=tuple(sorted(groups.items())))


def list_models() -> list[str]:
    """HF ids of the bundled configs."""
    return sorted(_bundled_files(), key=str.lower)


def _from_path(name: str) -> ResolvedModel | None:
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        config_file = path / "config.json"
    elif path.is_file() and path.suffix == ".json":
        config_file, path = path, path.parent
    else:
        return None
    spec = spec_from_config(_with_quant_files(_read_json(config_file), path), str(path.resolve()), str(config_file))
    spec = with_tensor_bytes(spec, weights.local_tensor_bytes(path))
    return ResolvedModel(spec, spec.checkpoint_quant, None)


def _with_quant_files(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """config.json plus the quantisation a side file (hf_quant_config.json, quantize_config.json) describes."""
    if config.get("quantization_config"):
        return config
    for name in hub.QUANT_FILES:
        if (folder / name).is_file():
            return {**config, "quantization_config": hub.quant_description(name, _read_json(folder / name))}
    return config


def _from_catalog(name: str) -> ResolvedModel | None:
    """A bundled id, an alias, or either with a pre-quantised repo suffix (-FP8, -AWQ, ...)."""
    lowered = name.lower()
    canonical = _canonical_id(lowered)
    if canonical is not None:
        spec = _bundled_spec(canonical)
        return ResolvedModel(spec, spec.checkpoint_quant, None)
    for suffix, quant in QUANT_SUFFIXES:
        if lowered.endswith(suffix.lower()):
            canonical = _canonical_id(lowered[: -len(suffix)])
            if canonical is not None:
                spec = dataclasses.replace(_bundled_spec(canonical), id=canonical + suffix)
                return ResolvedModel(with_checkpoint_quant(spec, quant), quant, None)
    return None


def _canonical_id(lowered: str) -> str | None:
    """The properly cased bundled or alias id for a lower-cased full id or bare repo name."""
    by_full, by_bare = _ids_by_lowered()
    if lowered in by_full:
        return by_full[lowered]
    if "/" in lowered:
        return None
    return by_bare.get(lowered)


@cache
def _ids_by_lowered() -> tuple[dict[str, str], dict[str, str]]:
    """Lower-cased full id and bare repo name -> id, over the ~2,000 catalog ids (built once, not per lookup)."""
    ids = _catalog_ids()
    return {known.lower(): known for known in ids}, {known.lower().split("/", 1)[1]: known for known in ids}


def _from_ollama(name: str) -> ResolvedModel | None:
    if "/" in name:
        return None
    model, _, typed_tag = name.partition(":")
    model = model.lower()
    entry = OLLAMA.get(model)
    if entry is None:
        return None
    typed_tag = typed_tag or "latest"
    tag = typed_tag.lower()
    size, rest = (entry.latest, "") if tag == "latest" else _split_size(tag, entry.sizes)
    if size is None:
        return None
    hf_id = entry.sizes[size]
    for (variant_size, variant), variant_id in entry.variants.items():
        if size == variant_size and (rest == variant or rest.startswith(variant + "-")):
            hf_id = variant_id
    words = [w for w in rest.split("-") if w]
    quant = next((w for w in words if _GGUF_QUANT.match(w)), None)
    quant = quant or next((OLLAMA_QUANT_WORDS[w] for w in words if w in OLLAMA_QUANT_WORDS), None)
    quant = (quant or entry.default_quant).lower()
    spec = _bundled_spec(hf_id)
    published = ollama_registry.weight_bytes(model, typed_tag)
    if published:
        spec = dataclasses.replace(spec, gguf_bytes=published, gguf_quant=quant,
                                   source=f"{spec.source}; weights: Ollama registry manifest of {model}:{typed_tag}")
    return ResolvedModel(spec, quant, f"{model}:{typed_tag}")


def _split_size(tag: str, sizes: dict[str, str]) -> tuple[str | None, str]:
    """("30b-a3b", "q4_k_m") from "30b-a3b-q4_k_m": the longest known size that prefixes the tag."""
    for size in sorted(sizes, key=len, reverse=True):
        if tag == size or tag.startswith(size + "-"):
            return size, tag[len(size) + 1 :]
    return None, ""


def _hub_dirs(hf_home: str | Path | None) -> list[Path]:
    dirs = [Path(hf_home).expanduser() / "hub"] if hf_home else []
    return [*dirs, _hf_hub_dir()]


def _from_hf_cache(name: str, revision: str | None = None, cache: Path | None = None) -> ResolvedModel | None:
    if name.count("/") != 1:
        return None
    hub_dir = cache or _hf_hub_dir()
    if not hub_dir.is_dir():
        return None
    wanted = "models--" + name.replace("/", "--")
    repo = hub_dir / wanted
    if not repo.is_dir():
        repo = next((d for d in hub_dir.iterdir() if d.name.lower() == wanted.lower()), repo)
    snapshots = [s for s in (repo / "snapshots").glob("*") if (s / "config.json").is_file()]
    if revision is not None:
        ref = repo / "refs" / revision
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
        snapshots = [s for s in snapshots if s.name == commit]
    if not snapshots:
        return None
    newest = max(snapshots, key=lambda s: (s / "config.json").stat().st_mtime)
    config_file = newest / "config.json"
    hf_id = repo.name.removeprefix("models--").replace("--", "/", 1)
    spec = spec_from_config(_with_quant_files(_read_json(config_file), newest), hf_id, str(config_file))
    spec = with_tensor_bytes(spec, weights.local_tensor_bytes(newest))
    return ResolvedModel(spec, spec.checkpoint_quant, None)


def _hf_hub_dir() -> Path:
    """Same precedence as huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub, then ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


@cache
def _bundled_spec(model_id: str) -> ModelSpec:
    """Spec of a bundled id or alias; JSON is read only for the model asked for."""
    alias = ALIASES.get(model_id)
    base_id = alias.base if alias else model_id
    config = json.loads(_bundled_files()[base_id].read_text(encoding="utf-8"))
    source = "bundled"
    if alias:
        config = {**config, **alias.overrides}
        if "text_config" in config:
            config["text_config"] = {**config["text_config"], **alias.overrides}
        source = f"bundled ({base_id} shape)"
    return spec_from_config(config, model_id, source)


@lru_cache(maxsize=1)
def _bundled_files() -> dict[str, Any]:
    """HF id -> bundled JSON resource; files are named Org--Name.json like the HF cache."""
    folder = Path(__file__).with_name("bundled")  # as aliases.py; importlib.resources would add zipfile, tempfile
    return {
        entry.name[: -len(".json")].replace("--", "/", 1): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


def _catalog_ids() -> list[str]:
    return [*_bundled_files(), *ALIASES]


def _known_names() -> list[str]:
    tags = [f"{model}:{size}" for model, entry in OLLAMA.items() for size in entry.sizes]
    return [*_catalog_ids(), *tags]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read config.json ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: config.json is not a JSON object")
    return data

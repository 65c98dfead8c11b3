"""Sizes of an Ollama tag from the Ollama registry's manifest: the real GGUF layer (and vision projector)
bytes, so a tag is priced as published rather than from parameter counts.

The registry speaks the Docker registry v2 API (`GET /v2/library/<model>/manifests/<tag>`, a
`application/vnd.docker.distribution.manifest.v2+json` manifest whose layers carry Ollama media types).
Answers are cached on disk beside the Hub metadata; an unreachable registry is not an error: the planner
falls back to the mapped HF architecture and the tag's quantisation.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from sparkserve.models import hub

DEFAULT_REGISTRY = "https://registry.ollama.ai"
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# Layers that hold weights the runner loads: the GGUF model and, for vision models, the projector.
WEIGHT_MEDIA_TYPES = ("application/vnd.ollama.image.model", "application/vnd.ollama.image.projector")
TIMEOUT_S = 3.0
# A registry that did not answer (or did not know the tag) is asked again only after this long, so an
# offline or firewalled machine pays the failed request once a day instead of on every `plan`.
RETRY_AFTER_S = 24 * 3600.0


def registry() -> str:
    return (os.environ.get("OLLAMA_REGISTRY") or DEFAULT_REGISTRY).rstrip("/")


def _cache_file(model: str, tag: str) -> Path:
    return hub.cache_dir() / "ollama" / _safe(model) / f"{_safe(tag)}.json"


def _safe(part: str) -> str:
    return re.sub(r"[^\w.-]", "_", part)


def weight_bytes(model: str, tag: str) -> int | None:
    """Bytes of the tag's weight layers; None when the registry cannot be asked or does not know the tag."""
    cached = _cache_file(model, tag)
    try:
        entry = json.loads(cached.read_text(encoding="utf-8"))
        if entry.get("weight_bytes") is not None:
            return int(entry["weight_bytes"])
        if entry.get("registry") == registry() and time.time() - float(entry["missed_at"]) < RETRY_AFTER_S:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    if hub.offline():
        return None
    manifest = _fetch(model, tag)
    layers = (manifest or {}).get("layers") or []
    size = sum(int(layer.get("size") or 0) for layer in layers if layer.get("mediaType") in WEIGHT_MEDIA_TYPES)
    entry = {"weight_bytes": size} if size else {"missed_at": time.time()}
    entry["registry"] = registry()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(entry), encoding="utf-8")
    except OSError:
        pass
    return size or None


def _fetch(model: str, tag: str) -> dict | None:
    import httpx

    name = model if "/" in model else f"library/{model}"
    url = f"{registry()}/v2/{name}/manifests/{tag}"
    try:
        response = httpx.get(url, headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None

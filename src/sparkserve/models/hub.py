"""A Hugging Face repository's metadata, without its weights: config, generation config, quantisation
descriptions and the safetensors headers, fetched with huggingface_hub and kept on disk so the next plan
is instant and works offline.

huggingface_hub is imported only when a repo must be fetched: planning a bundled or cached model never
loads it (`sparkserve plan` stays fast).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkserve.errors import UserError
from sparkserve.models import weights

# Files a repo may describe its quantisation in, besides config.json's quantization_config:
# ModelOpt (NVFP4 / FP8) writes hf_quant_config.json; GPTQ and AutoRound write quantize_config.json.
QUANT_FILES = ("hf_quant_config.json", "quantize_config.json")
CACHE_FORMAT = 2
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class RepoNotFound(UserError):
    """The Hub has no such repo (or hides a private one): the caller names the closest known models."""


@dataclass(frozen=True)
class RepoMetadata:
    repo_id: str
    revision: str  # what was asked for ("main", a tag, a commit)
    commit: str  # the commit it resolved to
    config: dict[str, Any]  # config.json with the quantisation description merged in
    generation_config: dict[str, Any]
    # bytes per ParamCounts group, summed from the safetensors headers once ({} when the repo has none): a
    # DeepSeek checkpoint lists 90,000 tensors, too many to classify again on every plan
    group_bytes: dict[str, int]
    source: str  # where it came from, for messages


def split_revision(name: str) -> tuple[str, str | None]:
    """"org/name@rev" -> ("org/name", "rev")."""
    repo, sep, revision = name.partition("@")
    return repo, (revision if sep and revision else None)


def is_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(split_revision(name)[0]))


def cache_dir() -> Path:
    """SPARKSERVE_MODELS_CACHE, else ~/.cache/sparkserve/models (XDG_CACHE_HOME honoured)."""
    if os.environ.get("SPARKSERVE_MODELS_CACHE"):
        return Path(os.environ["SPARKSERVE_MODELS_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sparkserve" / "models"


def offline() -> bool:
    """`--offline` and huggingface_hub's own HF_HUB_OFFLINE switch."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_file(repo_id: str, revision: str) -> Path:
    safe_rev = re.sub(r"[^\w.-]", "_", revision)
    return cache_dir() / repo_id.replace("/", "--") / f"{safe_rev}.json"


def load_cached(repo_id: str, revision: str | None) -> RepoMetadata | None:
    path = _cache_file(repo_id, revision or "main")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return None
    return RepoMetadata(
        repo_id=data["repo_id"], revision=data["revision"], commit=data["commit"], config=data["config"],
        generation_config=data.get("generation_config") or {}, group_bytes=data.get("group_bytes") or {},
        source=f"{path} (fetched from the Hub, commit {data['commit'][:12]})",
    )


def _store(meta: RepoMetadata) -> None:
    path = _cache_file(meta.repo_id, meta.revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": CACHE_FORMAT, "repo_id": meta.repo_id, "revision": meta.revision, "commit": meta.commit,
            "config": meta.config, "generation_config": meta.generation_config, "group_bytes": meta.group_bytes}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a file


def hf_token() -> str | None:
    """HF_TOKEN from the environment, else from ./.env (the file compose and doctor use)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token.strip()
    try:
        lines = Path(".env").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == "HF_TOKEN":
            return value.strip().strip("'\"") or None
    return None


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def fetch(repo_id: str, revision: str | None) -> RepoMetadata:
    """Metadata of a Hub repo, from sparkserve's cache or (one time) from the Hub; UserError for what the user
    must fix: gated without access, no such repo or revision, no config.json, offline with nothing cached."""
    cached = load_cached(repo_id, revision)
    if cached is not None:
        return cached
    if offline():
        raise UserError(f"{repo_id}: offline and nothing cached for it; run `sparkserve plan -m {repo_id}` once with "
                        "network, or point --model at a directory holding config.json")
    meta = _download(repo_id, revision or "main")
    _store(meta)
    return meta


def _download(repo_id: str, revision: str) -> RepoMetadata:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # plan's stderr is for one-line errors
    url, token = endpoint(), hf_token()
    api = HfApi(endpoint=url, token=token or False)
    files_dir = cache_dir() / "files"

    def get_json(name: str, commit: str) -> dict[str, Any]:
        path = hf_hub_download(repo_id, name, revision=commit, cache_dir=files_dir, endpoint=url,
                               token=token or False)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    try:
        info = api.model_info(repo_id, revision=revision)
        commit = str(info.sha or revision)
        files = {s.rfilename for s in info.siblings or []}
        if "config.json" not in files:
            raise UserError(f"{repo_id}: the repo has no config.json (not a transformers checkpoint); GGUF-only repos "
                            "are planned through their Ollama tag")
        config = get_json("config.json", commit)
        generation = get_json("generation_config.json", commit) if "generation_config.json" in files else {}
        for name in QUANT_FILES:
            if name in files and not config.get("quantization_config"):
                config["quantization_config"] = quant_description(name, get_json(name, commit))
        tensors: dict[str, int] = {}
        # get_safetensors_metadata reads the root checkpoint (model.safetensors or its index); weights kept only
        # in sub-folders (original/, consolidated.safetensors) leave the estimate from the config
        if files & {"model.safetensors", "model.safetensors.index.json"}:
            st = api.get_safetensors_metadata(repo_id, revision=commit)
            for file_meta in st.files_metadata.values():
                for name, tensor in file_meta.tensors.items():
                    start, end = tensor.data_offsets
                    tensors[name] = end - start
    except UserError:
        raise
    except GatedRepoError:
        fix = "HF_TOKEN's account has not been granted access" if token else "no HF_TOKEN is set (environment or .env)"
        raise UserError(f"{repo_id} is gated and {fix}: accept its terms at https://huggingface.co/{repo_id} and set "
                        "HF_TOKEN to a token of that account") from None
    except RepositoryNotFoundError:
        raise RepoNotFound(f"{repo_id}: no such model on {url}") from None
    except RevisionNotFoundError:
        raise UserError(f"{repo_id}: revision {revision!r} not found; use a branch, tag or commit of the repo"
                        ) from None
    except EntryNotFoundError as exc:
        raise UserError(f"{repo_id}: a file listed by the Hub is missing ({exc})") from None
    except HfHubHTTPError as exc:
        raise UserError(f"{repo_id}: the Hub answered {exc.response.status_code} at {url}; retry later or plan "
                        "with --offline from the cache") from None
    except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeouts: the library's transport errors
        raise UserError(f"{repo_id}: cannot fetch metadata from {url} ({type(exc).__name__}: {exc}); check the "
                        "network, or plan with --offline from the cache") from None
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    groups = weights.group_bytes(tensors.items(), int(text.get("num_hidden_layers") or 0))
    return RepoMetadata(repo_id, revision, commit, config, generation, groups,
                        source=f"{url}/{repo_id} (commit {commit[:12]})")


def quant_description(file_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A `quantization_config` equivalent to what a side file says."""
    if file_name == "hf_quant_config.json":
        quant = data.get("quantization") or {}
        return {"quant_method": "modelopt", "quant_algo": str(quant.get("quant_algo") or ""),
                "exclude_modules": quant.get("exclude_modules") or []}
    method = str(data.get("quant_method") or ("autoround" if "autoround_version" in data else "gptq"))
    return {"quant_method": method, "bits": data.get("bits"), "group_size": data.get("group_size")}

"""Fetch a service's model before `up`: Hub checkpoints into the stack's HF cache, Ollama tags through
the running Ollama server. Both resume. huggingface_hub (2.x) throws a partial file away when a download
fails, so the weight files (LFS blobs) are fetched here first, into `blobs/<sha256>.sparkserve-partial`
with a Range request continuing whatever an earlier run left, and moved to `blobs/<sha256>` when whole;
`snapshot_download` then finds them in place, links them into the snapshot and fetches the small files.

Also what a download will take on disk: the repo's file list where the Hub answers, else the
checkpoint's own size (its safetensors headers, or its parameters in the checkpoint's dtype), never
the size the engine holds in memory after quantising on load.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkserve.errors import UserError
from sparkserve.models import hub

# Bytes per parameter of a checkpoint stored in this torch dtype (config.json "torch_dtype"/"dtype").
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}
PARTIAL = ".sparkserve-partial"
CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]  # file, bytes so far, file size


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None  # LFS files (weights): the blob's name in the cache


@dataclass(frozen=True)
class DownloadSize:
    bytes: int
    how: str  # "repo file list" or "checkpoint dtype"


def hf_hub_cache(stack: Any, svc: Any) -> Path:
    """Where the service's engine looks for Hub downloads: <hf_cache>/hub, as its container mounts it and a
    native service's HF_HOME names it; a native service of a stack without hf_cache uses the user's cache."""
    settings = stack.spec.stack
    if svc.runtime == "native" and "hf_cache" not in settings.model_fields_set:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    return Path(settings.hf_cache).expanduser() / "hub"


def is_local(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def hub_token(stack_dir: Path) -> str | None:
    """HF_TOKEN from the environment, else the stack's .env; never printed."""
    from sparkserve.runtime.native import read_env_file

    return os.environ.get("HF_TOKEN") or read_env_file(stack_dir / ".env").get("HF_TOKEN") or None


def hub_listing(model: str, revision: str | None, token: str | None) -> list[HubFile] | None:
    """Every file in the repo at `revision`; None when the Hub cannot be asked (offline, unreachable)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return None
    try:
        api = HfApi(endpoint=hub.endpoint(), token=token or False)
        entries = api.list_repo_tree(model, revision=revision, recursive=True)
        return [HubFile(e.path, int(e.size), e.lfs.sha256 if e.lfs else None)
                for e in entries if isinstance(e, RepoFile)]
    except (HfHubHTTPError, OSError, ValueError):
        return None


def repo_files(model: str, revision: str | None, token: str | None) -> dict[str, int] | None:
    """path -> size of every file in the repo; None when the Hub cannot be asked."""
    listing = hub_listing(model, revision, token)
    return None if listing is None else {f.path: f.size for f in listing}


def selected(files: dict[str, int], patterns: list[str]) -> dict[str, int]:
    return {path: size for path, size in files.items() if any(fnmatch.fnmatch(path, p) for p in patterns)}


def fetch_blob(model: str, file: HubFile, *, revision: str | None, blobs: Path, token: str | None,
               progress: Progress | None = None) -> None:
    """One LFS file into blobs/<sha256>, continuing a partial file left by an earlier, interrupted run."""
    import httpx
    from huggingface_hub import hf_hub_url

    assert file.sha256 is not None
    blob, part = blobs / file.sha256, blobs / f"{file.sha256}{PARTIAL}"
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if 0 < have < file.size:
        headers["Range"] = f"bytes={have}-"
    elif have >= file.size:
        have = 0  # longer than the file: not ours to continue
    url = hf_hub_url(model, file.path, revision=revision, endpoint=hub.endpoint())
    timeout = httpx.Timeout(30.0, read=120.0)
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as response:
        if response.status_code == 200:
            have = 0  # the server sent the whole file
        elif response.status_code != 206:
            raise UserError(f"{model}: {file.path}: the Hub answered HTTP {response.status_code}")
        with open(part, "ab" if have else "wb") as fh:
            if progress:
                progress(file.path, have, file.size)
            for chunk in response.iter_bytes(CHUNK):
                fh.write(chunk)
                have += len(chunk)
                if progress:
                    progress(file.path, have, file.size)
    if have != file.size:
        raise UserError(f"{model}: {file.path}: got {have} of {file.size} bytes; run 'sparkserve pull' again to resume")
    part.rename(blob)


def checkpoint_bytes(spec: Any) -> int:
    """What the published checkpoint weighs: its safetensors headers, else parameters x checkpoint dtype."""
    if spec.checkpoint_bytes:
        return sum(b for _, b in spec.checkpoint_bytes)
    return spec.params.checkpoint_total * DTYPE_BYTES.get(spec.checkpoint_dtype, 2)


def download_size(engine: Any, model: str, revision: str | None, token: str | None, spec: Any) -> DownloadSize:
    files = repo_files(model, revision, token)
    if files:
        patterns = engine.hub_download_patterns(list(files)) or ["*"]
        return DownloadSize(sum(selected(files, patterns).values()), "repo file list")
    return DownloadSize(checkpoint_bytes(spec), "checkpoint dtype")


def pull_hub(engine: Any, model: str, *, revision: str | None, cache_dir: Path, token: str | None,
             progress: Progress | None = None) -> tuple[Path, int]:
    """The weights (resumable), then snapshot_download of what the engine loads; returns the snapshot
    folder and the bytes it holds."""
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    listing = hub_listing(model, revision, token)
    if listing is None:
        raise UserError(f"{model}: the Hub did not list the repository's files (gated, private, offline or no "
                        "network?); check HF_TOKEN in .env, HF_ENDPOINT and HF_HUB_OFFLINE, and try again")
    files = {f.path: f.size for f in listing}
    patterns = engine.hub_download_patterns(list(files)) or ["*"]
    wanted = selected(files, patterns)
    blobs = cache_dir / f"models--{model.replace('/', '--')}" / "blobs"
    try:
        for file in listing:
            if file.path in wanted and file.sha256:
                fetch_blob(model, file, revision=revision, blobs=blobs, token=token, progress=progress)
    except (httpx.HTTPError, OSError) as exc:
        raise UserError(f"{model}: download stopped ({type(exc).__name__}: {exc}); "
                        "run 'sparkserve pull' again to resume") from None
    try:
        folder = snapshot_download(model, revision=revision, cache_dir=str(cache_dir), allow_patterns=patterns,
                                   token=token or False, endpoint=hub.endpoint())
    except GatedRepoError:
        raise UserError(f"{model} is gated: accept its licence on huggingface.co, then put HF_TOKEN=<token> in .env"
                        ) from None
    except RepositoryNotFoundError:
        raise UserError(f"{model}: no such repository on the Hub (or it is private: set HF_TOKEN in .env)") from None
    except RevisionNotFoundError:
        raise UserError(f"{model}: no revision {revision!r} on the Hub") from None
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"{model}: download stopped ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                        "run 'sparkserve pull' again to resume") from None
    return Path(folder), sum(wanted.values())

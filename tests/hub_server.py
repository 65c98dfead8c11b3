"""A Hugging Face Hub-shaped HTTP server on 127.0.0.1 for tests: the real `huggingface_hub` code runs against it.

Point the library at it with `HF_ENDPOINT=<server.url>` (set before huggingface_hub is imported, or pass
`endpoint=`). It answers the endpoints the library calls, shaped like the Hub's responses:

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info (sha, siblings, gated);
- `GET /api/models/{repo}/tree/{rev}`: the file list `snapshot_download` reads (size, oid, lfs);
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: the file, with `ETag`, `X-Repo-Commit`, `Content-Length`, and for
  LFS-stored files (weights) `X-Linked-Etag` / `X-Linked-Size`; `Range: bytes=a-b` answers 206;
- errors as the Hub sends them: `X-Error-Code` RepoNotFound (401), RevisionNotFound / EntryNotFound (404),
  GatedRepo (401 without a token, 403 with a token that was not granted access).

Files are bytes, or `LazyFile`s whose content is generated on demand (a safetensors header followed by zeros),
so a test can publish a checkpoint with real 80-billion-parameter tensor shapes without holding it in memory.
Every request is recorded (`server.requests`), with the bytes the body carried, so a test can check what the
client asked for, e.g. that no weights were downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote, urlsplit

# safetensors dtype names and their element sizes (safetensors/src/tensor.rs, Dtype); the sub-byte ones
# (F4 = float4 e2m1, as ModelOpt NVFP4 stores two per U8 byte) are priced in bits.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".msgpack", ".h5")


def tensor_bytes(dtype: str, shape: Iterable[int]) -> int:
    return math.ceil(DTYPE_BITS[dtype] * math.prod(shape) / 8)


@dataclass(frozen=True)
class LazyFile:
    """A file known by its first bytes and its size; the rest reads as zeros."""

    head: bytes
    size: int
    etag: str

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        end = min(end, self.size)
        if start >= end:
            return b""
        part = self.head[start:end]
        return part + bytes(end - start - len(part))


def safetensors_file(
    tensors: Mapping[str, tuple[str, tuple[int, ...]]], metadata: Mapping[str, str] | None = None
) -> LazyFile:
    """A real safetensors file (8-byte little-endian header length, JSON header, data) with zero-valued tensors."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = tensor_bytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header so the data starts 8-byte aligned
    head = struct.pack("<Q", len(raw)) + raw
    etag = hashlib.sha256(head + str(offset).encode()).hexdigest()
    return LazyFile(head, len(head) + offset, etag)


@dataclass
class HubRepo:
    """One model repository: its files at one commit, which `revisions` (branch or tag names) also resolve to."""

    repo_id: str
    files: dict[str, bytes | LazyFile]
    revisions: tuple[str, ...] = ("main",)
    gated: bool = False
    granted_tokens: frozenset[str] = frozenset()
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(self.repo_id.encode())
            for path in sorted(self.files):
                digest.update(path.encode() + _etag(self.files[path]).encode())
            self.commit = digest.hexdigest()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    token: str | None
    status: int
    body_bytes: int


def _etag(content: bytes | LazyFile) -> str:
    if isinstance(content, LazyFile):
        return content.etag
    return hashlib.sha256(content).hexdigest()


def _git_oid(content: bytes | LazyFile) -> str:
    if isinstance(content, LazyFile):
        return hashlib.sha1(content.etag.encode()).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _size(content: bytes | LazyFile) -> int:
    return content.size if isinstance(content, LazyFile) else len(content)


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class HubServer:
    """Serve `HubRepo`s on 127.0.0.1 on a free port; use as a context manager or call start()/stop()."""

    def __init__(self, repos: Iterable[HubRepo] = ()) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.chunk_delay_s = 0.0  # pause after each 1 MiB of a body: a download a test can interrupt
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        for repo in repos:
            self.add(repo)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def bytes_served(self, path_suffix: str) -> int:
        """Body bytes sent for files whose request path ends with `path_suffix`."""
        return sum(r.body_bytes for r in self.requests if r.path.split("?")[0].endswith(path_suffix))


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    lazy: tuple[LazyFile, int, int] | None = None  # a LazyFile's byte range, written in chunks


def _error(status: int, code: str, message: str) -> _Answer:
    body = json.dumps({"error": message}).encode()
    return _Answer(status, {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}, body)


def _json(data: Any, status: int = 200) -> _Answer:
    return _Answer(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def _handler_for(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth.removeprefix("Bearer ").strip() or None

        def _answer(self, *, head: bool) -> None:
            token = self._token()
            answer = _route(server, urlsplit(self.path).path, token, self.headers.get("Range"), head)
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in answer.headers:
                self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            sent = 0
            try:
                if not head:
                    for chunk in _chunks(answer):
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        if server.chunk_delay_s:
                            time.sleep(server.chunk_delay_s)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client hung up: what it got is recorded below
            finally:  # a client that hung up mid-body is recorded too, with what it got
                server.record(Request(self.command, self.path, self.headers.get("Range"), token, answer.status, sent))

    return Handler


def _chunks(answer: _Answer, size: int = 1 << 20) -> Iterable[bytes]:
    if answer.lazy is None:
        if answer.body:
            yield answer.body
        return
    content, start, end = answer.lazy
    for at in range(start, end, size):
        yield content.read(at, min(end, at + size))


def _route(server: HubServer, path: str, token: str | None, range_header: str | None, head: bool) -> _Answer:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "models"] and len(parts) >= 4:
        repo = server.repos.get(f"{parts[2]}/{parts[3]}")
        if repo is None:
            return _error(401, "RepoNotFound", "Repository not found")
        rest = parts[4:]
        if not rest:
            return _model_info(repo, "main")
        if rest[0] == "revision" and len(rest) >= 2:
            return _model_info(repo, "/".join(rest[1:]))
        if rest[0] == "tree" and len(rest) >= 2:
            return _tree(repo, rest[1], token)
        return _error(404, "EntryNotFound", "Unknown API path")
    if len(parts) >= 5 and parts[2] == "resolve":
        repo = server.repos.get(f"{parts[0]}/{parts[1]}")
        if repo is None:
            return _error(401, "RepoNotFound", "Repository not found")
        return _resolve(repo, parts[3], "/".join(parts[4:]), token, range_header, head)
    return _error(404, "EntryNotFound", f"No route for {path}")


def _revision_ok(repo: HubRepo, revision: str) -> bool:
    return revision in repo.revisions or revision == repo.commit


def _model_info(repo: HubRepo, revision: str) -> _Answer:
    if not _revision_ok(repo, revision):
        return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    siblings = [{"rfilename": path} for path in sorted(repo.files)]
    return _json({
        "_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
        "sha": repo.commit, "private": False, "disabled": False, "gated": "manual" if repo.gated else False,
        "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
        "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z", "siblings": siblings,
    })


def _gate(repo: HubRepo, token: str | None) -> _Answer | None:
    if not repo.gated or token in repo.granted_tokens:
        return None
    if token is None:
        return _error(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have access to it "
                      "and be authenticated to access it. Please log in.")
    return _error(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the authorized "
                  f"list. Visit https://huggingface.co/{repo.repo_id} to ask for access.")


def _tree(repo: HubRepo, revision: str, token: str | None) -> _Answer:
    if not _revision_ok(repo, revision):
        return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    denied = _gate(repo, token)
    if denied is not None:
        return denied
    entries = []
    for path in sorted(repo.files):
        content = repo.files[path]
        entry: dict[str, Any] = {"type": "file", "oid": _git_oid(content), "size": _size(content), "path": path}
        if _is_lfs(path):
            entry["lfs"] = {"oid": _etag(content), "size": _size(content), "pointerSize": 134}
        entries.append(entry)
    return _json(entries)


def _resolve(repo: HubRepo, revision: str, path: str, token: str | None, range_header: str | None,
             head: bool) -> _Answer:
    if not _revision_ok(repo, revision):
        return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    denied = _gate(repo, token)
    if denied is not None:
        return denied
    content = repo.files.get(path)
    if content is None:
        return _error(404, "EntryNotFound", f"{path} does not exist on {revision}")
    size = _size(content)
    headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    etag = _etag(content)
    if _is_lfs(path):
        headers.update({"ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
    else:
        headers["ETag"] = f'"{_git_oid(content)}"'
    start, end, status = 0, size, 200
    if range_header:
        match = _RANGE.match(range_header.strip())
        if match is None or (not match.group(1) and not match.group(2)):
            return _Answer(416, {"Content-Range": f"bytes */{size}"})
        if match.group(1):
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
        else:  # suffix range: the last N bytes
            start = max(0, size - int(match.group(2)))
        if start >= size:
            return _Answer(416, {"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if head:
        return _Answer(status, headers)
    if isinstance(content, LazyFile):
        return _Answer(status, headers, lazy=(content, start, end))
    return _Answer(status, headers, content[start:end])

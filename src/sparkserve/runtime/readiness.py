"""Wait until a started service really answers, not merely until its container runs.

vLLM: /health, then /v1/models, then one tiny completion (the warm-up that compiles the first
request's kernels). Ollama: the API, then the model pulled (with progress) and loaded.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from sparkserve.errors import UserError

# Start-up lines worth showing while vLLM loads (field notes: vLLM 0.32 log wording).
PROGRESS_LINES = re.compile(
    r"(Model loading took [\d.]+ ?GiB.*|Available KV cache memory: [\d.]+ ?GiB|[GC]PU KV cache size: [\d,]+ tokens"
    r"|Maximum concurrency for [\d,]+ tokens per request: [\d.]+x|Loading safetensors checkpoint shards: +\d+% .*"
    r"|Capturing CUDA graphs.*100%.*|pulling manifest|llama runner started in [\d.]+ seconds)"
)


REQUEST_TIMEOUT_S = 30.0  # one probe at most; never past the caller's deadline
CONNECT_TIMEOUT_S = 3.0


def _within(deadline: float) -> httpx.Timeout:
    """A request timeout that ends by the deadline: a server that accepts and never answers
    costs the time that is left, not a fixed 30 s."""
    left = max(0.05, deadline - time.monotonic())
    return httpx.Timeout(min(REQUEST_TIMEOUT_S, left), connect=min(CONNECT_TIMEOUT_S, left))


@dataclass(frozen=True)
class Target:
    name: str
    engine: str  # vllm or ollama
    base_url: str  # http://127.0.0.1:8000
    model: str  # vLLM: served name to expect (None-like "" takes the first); Ollama: the tag to pull
    api_key: str | None = None


@dataclass(frozen=True)
class Ready:
    name: str
    url: str
    model: str
    seconds: float


Alive = Callable[[], str | None]  # None while the container runs; else why it stopped
Say = Callable[[str], None]
PullProgress = Callable[[str, int, int], None]  # status, completed bytes, total bytes


def progress_lines(log_text: str) -> list[str]:
    """The start-up milestones in a chunk of log text, in order."""
    return [m.group(1).strip() for m in PROGRESS_LINES.finditer(log_text)]


def wait_ready(target: Target, *, timeout: float, alive: Alive = lambda: None, say: Say = lambda _m: None,
               tick: Callable[[], None] = lambda: None, pull_progress: PullProgress | None = None,
               poll: float = 2.0) -> Ready:
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(base_url=target.base_url, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                      trust_env=False) as client:
        if target.engine == "vllm":
            model = _wait_vllm(client, target, deadline, alive, say, tick, poll)
        else:
            model = _wait_ollama(client, target, deadline, alive, say, tick, poll, pull_progress)
    return Ready(name=target.name, url=target.base_url, model=model, seconds=time.monotonic() - started)


def _poll(client: httpx.Client, method: str, path: str, target: Target, deadline: float, alive: Alive,
          tick: Callable[[], None], poll: float, what: str, **kwargs) -> httpx.Response:
    """Repeat a request until it returns 2xx; stop early if the container died or time ran out."""
    last = "no answer yet"
    while True:
        try:
            if time.monotonic() >= deadline:
                raise httpx.TimeoutException("deadline")
            response = client.request(method, path, headers=_auth(target), timeout=_within(deadline), **kwargs)
            if response.is_success:
                return response
            if response.status_code == 401:
                raise UserError(f"{target.name}: {path} answered 401: the server wants an API key; "
                                "set VLLM_API_KEY in .env (sparkserve reads it from there too)")
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__ if str(exc) != "deadline" else last
        stopped = alive()
        if stopped:
            raise UserError(f"{target.name} stopped while waiting for {what}: {stopped}")
        tick()
        if time.monotonic() >= deadline:
            raise UserError(f"{target.name}: {what} not ready at {target.base_url}{path} in time ({last}); "
                            f"see 'sparkserve logs {target.name}'")
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def _auth(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _wait_vllm(client, target, deadline, alive, say, tick, poll) -> str:
    _poll(client, "GET", "/health", target, deadline, alive, tick, poll, "the engine")
    say(f"{target.name}: engine up (/health)")
    listed = _poll(client, "GET", "/v1/models", target, deadline, alive, tick, poll, "the model list").json()
    ids = [m.get("id", "") for m in listed.get("data", [])]
    if not ids:
        raise UserError(f"{target.name}: /v1/models lists no model")
    model = target.model if target.model in ids else ids[0]
    say(f"{target.name}: serving {model}")
    began = time.monotonic()
    body = {"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    _poll(client, "POST", "/v1/completions", target, deadline, alive, tick, poll, "a first completion", json=body)
    say(f"{target.name}: warm-up completion in {time.monotonic() - began:.1f} s")
    return model


def _wait_ollama(client, target, deadline, alive, say, tick, poll, pull_progress) -> str:
    version = _poll(client, "GET", "/api/version", target, deadline, alive, tick, poll, "the Ollama API").json()
    say(f"{target.name}: Ollama {version.get('version', '?')} up")
    model = target.model
    tags = _poll(client, "GET", "/api/tags", target, deadline, alive, tick, poll, "the model list").json()
    if not any(_same_tag(m.get("name", ""), model) for m in tags.get("models", [])):
        say(f"{target.name}: pulling {model}")
        _pull(client, target, pull_progress, deadline)
    began = time.monotonic()
    # An empty prompt loads the model and returns at once; the server's keep-alive then holds it.
    _poll(client, "POST", "/api/generate", target, deadline, alive, tick, poll, f"loading {model}",
          json={"model": model, "prompt": "", "stream": False})
    loaded = _poll(client, "GET", "/api/ps", target, deadline, alive, tick, poll, "the loaded models").json()
    if not any(_same_tag(m.get("name", ""), model) for m in loaded.get("models", [])):
        raise UserError(f"{target.name}: {model} did not stay loaded (see /api/ps); check OLLAMA_KEEP_ALIVE")
    say(f"{target.name}: {model} loaded in {time.monotonic() - began:.1f} s")
    return model


def _pull(client: httpx.Client, target: Target, progress: PullProgress | None, deadline: float) -> None:
    late = UserError(f"{target.name}: pulling {target.model} did not finish in time; pass a longer --timeout")
    try:
        _pull_until(client, target, progress, deadline, late)
    except httpx.TimeoutException:
        raise late from None
    except httpx.TransportError as exc:
        raise UserError(f"{target.name}: pulling {target.model} failed: {type(exc).__name__}") from None


def _pull_until(client: httpx.Client, target: Target, progress: PullProgress | None, deadline: float,
                late: UserError) -> None:
    with client.stream("POST", "/api/pull", json={"model": target.model, "stream": True},
                       timeout=_within(deadline)) as response:
        if not response.is_success:
            raise UserError(f"{target.name}: pulling {target.model} failed: HTTP {response.status_code}")
        for line in response.iter_lines():
            if time.monotonic() >= deadline:
                raise late
            if not line.strip():
                continue
            event = json.loads(line)
            if "error" in event:
                raise UserError(f"{target.name}: pulling {target.model} failed: {event['error']}")
            if progress:
                progress(event.get("status", ""), int(event.get("completed") or 0), int(event.get("total") or 0))


def _same_tag(listed: str, wanted: str) -> bool:
    """Ollama lists "qwen3:latest" for a pull of "qwen3"."""
    def norm(tag: str) -> str:
        return tag if ":" in tag else tag + ":latest"

    return norm(listed.lower()) == norm(wanted.lower())

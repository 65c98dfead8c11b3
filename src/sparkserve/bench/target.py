"""What to benchmark: a stack service by name or a URL, checked to be up before any load.

A target that does not answer fails at once with one line (UserError, exit 2), never after a
run full of connection errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from sparkserve.errors import UserError, closest

APIS = ("openai-chat", "openai-completions", "ollama", "ollama-chat")
UNKNOWN_ENGINE = "openai"  # an OpenAI-compatible server whose engine has not said what it is
PROBE_TIMEOUT_S = 5.0


@dataclass
class Target:
    """Where requests go and what the server said about itself."""

    api: str
    base_url: str  # http://127.0.0.1:8000 (no /v1)
    model: str  # the name requests carry
    engine: str  # a registered engine's name, or UNKNOWN_ENGINE for an unidentified OpenAI-compatible server
    service: str | None = None
    api_key: str | None = None
    model_root: str | None = None  # vLLM: where the model was loaded from (/v1/models root)
    max_model_len: int | None = None
    engine_version: str | None = None
    stack_model: str | None = None  # the stack's model id (HF id or Ollama tag) for the planner
    stack_quant: str | None = None
    stack_hardware: str | None = None
    server_args: dict[str, object] = field(default_factory=dict)
    api_guessed: bool = False  # no --api: an Ollama server at the URL gets its native API

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def is_ollama(self) -> bool:
        return self.api.startswith("ollama")

    @property
    def endpoint(self) -> str:
        return {
            "openai-chat": "/v1/chat/completions",
            "openai-completions": "/v1/completions",
            "ollama": "/api/generate",
            "ollama-chat": "/api/chat",
        }[self.api]

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/v1/chat/completions", "/v1/completions", "/v1", "/api/generate", "/api/chat", "/api"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def target_from_args(*, service: str | None, stack_file: str | None, url: str | None, model: str | None,
                     api: str | None, api_key: str | None) -> Target:
    """Build the target from `--service` (the stack file) or `--url/--model/--api`; nothing is contacted."""
    if api is not None and api not in APIS:
        guess = closest(api, APIS, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise UserError(f"--api {api!r}: expected one of {', '.join(APIS)}{hint}")
    key = api_key or os.environ.get("VLLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
    if service:
        if url:
            raise UserError("--service and --url both name a target; give one")
        return _from_stack(service, stack_file, model, api, key)
    if not url:
        raise UserError("no target: give --service NAME (from the stack file) or --url URL (with --model and --api)")
    from sparkserve.engines.registry import engine_for_api

    chosen = api or "openai-chat"
    engine = engine_for_api(chosen) or UNKNOWN_ENGINE
    return Target(api=chosen, base_url=_base(url), model=model or "", engine=engine, api_key=key,
                  api_guessed=api is None)


def _from_stack(name: str, stack_file: str | None, model: str | None, api: str | None, key: str | None) -> Target:
    from sparkserve.engines import get_engine
    from sparkserve.runtime.native import served_name, service_url
    from sparkserve.stack.load import STACK_FILE, find_stack, load_stack

    path = find_stack(stack_file)
    if path is None:
        raise UserError(f"--service {name}: no {STACK_FILE} here; pass --stack FILE or use --url")
    stack = load_stack(path)
    svc = stack.services.get(name)
    if svc is None:
        guess = closest(name, stack.services, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise UserError(f"--service {name}: no such service in {path}{hint} (services: {', '.join(stack.services)})")
    engine = get_engine(svc.engine)
    chosen = api or engine.bench_apis[0]
    if chosen not in engine.bench_apis:
        raise UserError(f"--service {name} is {engine.label}: use --api {' or '.join(engine.bench_apis)}")
    return Target(api=chosen, base_url=service_url(stack.spec.stack.bind, svc.port),
                  model=model or served_name(svc), engine=svc.engine, service=name,
                  api_key=key if engine.api_key_env else None, stack_model=svc.model, stack_quant=svc.quant,
                  stack_hardware=stack.spec.stack.hardware, server_args=dict(svc.args))


def probe(target: Target) -> Target:
    """Check the server answers and serves the model; fill in what it says about itself."""
    from sparkserve.engines.registry import engine_for_api

    where = f"--service {target.service}" if target.service else target.base_url
    try:
        with httpx.Client(base_url=target.base_url, timeout=PROBE_TIMEOUT_S, headers=target.headers()) as http:
            if target.api_guessed and _is_ollama(http):
                # Ollama also answers /v1, but only its own API reports its timings.
                target.api = "ollama"
                target.engine = engine_for_api(target.api) or target.engine
            if target.is_ollama:
                _probe_ollama(http, target, where)
            else:
                _probe_openai(http, target, where)
    except httpx.ConnectError as exc:
        reason = "connection refused" if "refused" in str(exc).lower() else (str(exc) or type(exc).__name__)
        raise UserError(f"{where}: not up ({reason}); start it (sparkserve up) or check the URL") from None
    except httpx.TimeoutException:
        raise UserError(f"{where}: no answer within {PROBE_TIMEOUT_S:.0f} s; "
                        "is the server overloaded or the URL wrong?") from None
    except httpx.HTTPError as exc:
        raise UserError(f"{where}: {type(exc).__name__}: {exc}") from None
    return target


def _probe_openai(http: httpx.Client, target: Target, where: str) -> None:
    answer = http.get("/v1/models")
    if answer.status_code == 401:
        raise UserError(f"{where}: /v1/models answered 401; set VLLM_API_KEY (or --api-key)")
    if not answer.is_success:
        raise UserError(f"{where}: /v1/models answered HTTP {answer.status_code}; is this an OpenAI-compatible server?")
    try:
        listed = [m for m in answer.json().get("data", []) if isinstance(m, dict)]
    except ValueError:
        raise UserError(f"{where}: /v1/models did not answer JSON; is this an OpenAI-compatible server?") from None
    ids = [str(m.get("id", "")) for m in listed]
    if not ids:
        raise UserError(f"{where}: /v1/models lists no model")
    if not target.model:
        target.model = ids[0]
    if target.model not in ids:
        raise UserError(f"{where}: the server does not serve {target.model!r}; it serves {', '.join(ids)} "
                        "(use --model)")
    entry = listed[ids.index(target.model)]
    target.model_root = entry.get("root") or None
    if isinstance(entry.get("max_model_len"), int):
        target.max_model_len = entry["max_model_len"]
    from sparkserve.engines import find_engine
    from sparkserve.engines.registry import identify_engine

    if find_engine(target.engine) is None:
        target.engine = identify_engine(http, entry) or target.engine
    found = find_engine(target.engine)
    if found is not None:
        target.engine_version = found.server_version(http)


def _is_ollama(http: httpx.Client) -> bool:
    try:
        answer = http.get("/api/version")
        return answer.is_success and "version" in answer.json()
    except (httpx.HTTPError, ValueError):
        return False


def _probe_ollama(http: httpx.Client, target: Target, where: str) -> None:
    version = http.get("/api/version")
    if not version.is_success:
        raise UserError(f"{where}: /api/version answered HTTP {version.status_code}; is this an Ollama server?")
    try:
        target.engine_version = str(version.json().get("version"))
        tags = http.get("/api/tags").json().get("models", [])
    except ValueError:
        raise UserError(f"{where}: the Ollama API did not answer JSON") from None
    names = [str(m.get("name", "")) for m in tags if isinstance(m, dict)]
    if not target.model:
        if not names:
            raise UserError(f"{where}: Ollama has no model pulled; pass --model and pull it first")
        target.model = names[0]
    wanted = target.model if ":" in target.model else target.model + ":latest"
    if not any((n if ":" in n else n + ":latest") == wanted for n in names):
        raise UserError(f"{where}: Ollama has no model {target.model!r} (pulled: {', '.join(names) or 'none'}); "
                        f"run 'ollama pull {target.model}'")

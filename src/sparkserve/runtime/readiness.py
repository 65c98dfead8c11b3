"""Wait until a started service really answers, not merely until its container runs.

The engine says what "answers" means (`Engine.wait_ready`: vLLM's /health, /v1/models and a warm-up
completion; Ollama's API, the model pulled and loaded); this module polls with a deadline, stops
early when the process or container died, and sends the API key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from sparkserve.errors import UserError

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
    engine: str  # a registered engine's name
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


def progress_lines(engine: str, log_text: str) -> list[str]:
    """The start-up milestones the engine logs in a chunk of log text, in order."""
    from sparkserve.engines import get_engine

    return get_engine(engine).progress_lines(log_text)


def wait_ready(target: Target, *, timeout: float, alive: Alive = lambda: None, say: Say = lambda _m: None,
               tick: Callable[[], None] = lambda: None, pull_progress: PullProgress | None = None,
               poll: float = 2.0) -> Ready:
    """Ask the service, the way its engine says (`Engine.wait_ready`), until it answers for its model."""
    from sparkserve.engines import get_engine

    engine = get_engine(target.engine)
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(base_url=target.base_url, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                      trust_env=False) as client:

        def ask(method: str, path: str, what: str, **kwargs: object) -> httpx.Response:
            return _poll(client, method, path, target, deadline, alive, tick, poll, what,
                         key_env=engine.api_key_env, **kwargs)

        model = engine.wait_ready(ask, name=target.name, model=target.model, say=say, pull_progress=pull_progress,
                                  client=client, deadline=deadline)
    return Ready(name=target.name, url=target.base_url, model=model, seconds=time.monotonic() - started)


def _poll(client: httpx.Client, method: str, path: str, target: Target, deadline: float, alive: Alive,
          tick: Callable[[], None], poll: float, what: str, key_env: str | None = None, **kwargs) -> httpx.Response:
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
                where = (
                    f"set {key_env} in .env (sparkserve reads it from there too)"
                    if key_env
                    else "this engine takes none"
                )
                raise UserError(f"{target.name}: {path} answered 401: the server wants an API key; {where}")
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__ if str(exc) != "deadline" else last
        stopped = alive()
        if stopped:
            raise UserError(f"{target.name} stopped while waiting for {what}: {stopped}")
        tick()
        if time.monotonic() >= deadline:
            raise UserError(
                f"{target.name}: {what} not ready at {target.base_url}{path} in time ({last}); "
                f"see 'sparkserve logs {target.name}'"
            )
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def _auth(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}

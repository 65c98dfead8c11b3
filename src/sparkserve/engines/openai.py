"""What every OpenAI-compatible server shares: /v1 routes, model listing, the warm-up completion.

vLLM builds on it; so can any engine that serves the OpenAI API (the test engine of
tests/test_engine_seam.py does).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sparkserve.engines.base import Engine, Poll, PullProgress, Say
from sparkserve.errors import UserError

if TYPE_CHECKING:
    import httpx

MODELS_PATH = "/v1/models"


class OpenAICompatible(Engine):
    """An engine that answers `health_path` once alive and serves /v1/models and /v1/completions."""

    health_path = "/health"
    api_suffix = "/v1"
    bench_apis = ("openai-chat", "openai-completions")

    def served_name(self, model: str, args: Mapping[str, Any]) -> str:
        """`served_model_name` in the stack args (its first entry), else the model itself."""
        served = args.get("served_model_name")
        if isinstance(served, list):
            served = served[0] if served else None
        return str(served or model)

    def wait_ready(self, poll: Poll, *, name: str, model: str, say: Say,
                   pull_progress: PullProgress | None = None, client: httpx.Client | None = None,
                   deadline: float | None = None) -> str:
        """Alive (health path), the model listed, then one tiny completion: the warm-up that compiles
        the first request's kernels."""
        poll("GET", self.health_path, "the engine")
        say(f"{name}: engine up ({self.health_path})")
        ids = _model_ids(poll("GET", MODELS_PATH, "the model list").json())
        if not ids:
            raise UserError(f"{name}: {MODELS_PATH} lists no model")
        served = model if model in ids else ids[0]
        say(f"{name}: serving {served}")
        began = time.monotonic()
        body = {"model": served, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        poll("POST", "/v1/completions", "a first completion", json=body)
        say(f"{name}: warm-up completion in {time.monotonic() - began:.1f} s")
        return served

    def list_models(self, http: httpx.Client) -> list[str]:
        response = http.get(MODELS_PATH)
        response.raise_for_status()
        return _model_ids(response.json())


def _model_ids(listed: object) -> list[str]:
    data = listed.get("data", []) if isinstance(listed, dict) else []
    return [str(m.get("id", "")) for m in data if isinstance(m, dict)]

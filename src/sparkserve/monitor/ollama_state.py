"""Read an Ollama server: its version and the models it holds in memory (`/api/ps`).

Ollama has no /metrics (ollama#3144), so this is the only view of what it keeps loaded and
for how long. Fields a release does not send stay None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx


@dataclass(frozen=True)
class LoadedModel:
    """One entry of /api/ps: size is the model's whole footprint, size_vram the part on the GPU."""

    name: str
    size_bytes: int | None = None
    size_vram_bytes: int | None = None
    expires_at: str | None = None
    expires_in_s: float | None = None  # negative once past; huge for keep_alive=-1
    context_length: int | None = None


@dataclass(frozen=True)
class OllamaState:
    up: bool
    error: str | None = None
    version: str | None = None
    models: list[LoadedModel] = field(default_factory=list)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def seconds_until(stamp: str | None, now: datetime | None = None) -> float | None:
    """Seconds from now to an RFC 3339 time (Go's nanoseconds trimmed by fromisoformat)."""
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()


def parse_ps(data: object, now: datetime | None = None) -> list[LoadedModel]:
    """/api/ps JSON -> loaded models; entries without a name are skipped."""
    models = data.get("models") if isinstance(data, dict) else None
    out = []
    for m in models or []:
        if not isinstance(m, dict) or not (m.get("name") or m.get("model")):
            continue
        expires = m.get("expires_at") if isinstance(m.get("expires_at"), str) else None
        out.append(LoadedModel(
            name=str(m.get("name") or m.get("model")),
            size_bytes=_int(m.get("size")),
            size_vram_bytes=_int(m.get("size_vram")),
            expires_at=expires,
            expires_in_s=seconds_until(expires, now),
            context_length=_int(m.get("context_length")),
        ))
    return out


def read_ollama(client: httpx.Client, base_url: str) -> OllamaState:
    """/api/version (is it up, which release) then /api/ps (what it holds)."""
    try:
        response = client.get(base_url + "/api/version")
    except httpx.HTTPError as exc:
        reason = "not listening" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
        return OllamaState(up=False, error=reason)
    if response.status_code != 200:
        return OllamaState(up=False, error=f"/api/version answered {response.status_code}")
    try:
        version = response.json().get("version")
    except (ValueError, AttributeError):
        version = None
    try:
        ps = client.get(base_url + "/api/ps")
        models = parse_ps(ps.json()) if ps.status_code == 200 else []
        error = None if ps.status_code == 200 else f"/api/ps answered {ps.status_code}"
    except (httpx.HTTPError, ValueError) as exc:
        models, error = [], f"/api/ps unreadable ({type(exc).__name__})"
    return OllamaState(up=True, error=error, version=str(version) if version else None, models=models)

"""The services to watch, with what their runtime knows about them (pid, container, start time).

The command layer hands over one row per service as `status` builds it (service, engine,
runtime, url, state, health, and pid where the native runtime records one); this module adds
what the host can tell: the process listening on a native service's port, and for compose
services the container's full id and start time from `docker inspect`. Each lookup may fail
(no Docker, another user's process): the reading is then n/a.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from sparkserve.readings import proc as procs


@dataclass(frozen=True)
class Target:
    """One service to read; `row` keeps the runtime's own fields for the status output."""

    name: str
    engine: str  # a registered engine's name
    runtime: str  # compose, native, or url (given on the command line)
    url: str
    api_key: str | None = None
    pid: int | None = None  # native: the engine's process (its group holds the workers)
    container_id: str | None = None  # compose: full 64-hex id
    started_at: float | None = None  # wall-clock seconds, when the runtime knows it
    row: dict = field(default_factory=dict)

    @property
    def port(self) -> int | None:
        return urlparse(self.url).port


def target_from_row(row: dict, api_key: str | None = None) -> Target:
    """A status row -> Target; a `pid` the native runtime recorded is kept."""
    from sparkserve.engines import get_engine

    pid = row.get("pid")
    takes_key = bool(get_engine(str(row["engine"])).api_key_env)
    return Target(name=str(row["service"]), engine=str(row["engine"]), runtime=str(row.get("runtime") or "native"),
                  url=str(row["url"]), api_key=api_key if takes_key else None,
                  pid=pid if isinstance(pid, int) and pid > 0 else None, row=dict(row))


def with_native_pid(target: Target) -> Target:
    """A native service with no recorded pid: the process listening on its port, if any."""
    if target.runtime == "compose" or target.port is None:
        return target
    if target.pid is not None and procs.service_processes(target.pid):
        return target
    pid = procs.listening_pid(target.port)  # not started by sparkserve, or restarted since its pid was recorded
    return replace(target, pid=pid)


@dataclass(frozen=True)
class Container:
    id: str
    started_at: float | None


def compose_containers(compose_file: Path, timeout: float = 10.0) -> dict[str, Container]:
    """service -> its container (full id, start time) via `docker compose ps` and `docker inspect`;
    {} on any failure."""
    base = ["docker", "compose", "--file", str(compose_file), "--project-directory", str(compose_file.parent)]
    ps = _run([*base, "ps", "--all", "--format", "json"], timeout)
    if ps is None:
        return {}
    text = ps.strip()
    try:
        rows = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError:
        return {}
    ids = {str(r.get("Service")): str(r.get("ID")) for r in rows if isinstance(r, dict) and r.get("ID")}
    if not ids:
        return {}
    inspected = _run(["docker", "inspect", *ids.values()], timeout)
    details: dict[str, Container] = {}
    try:
        for c in json.loads(inspected or "[]"):
            details[str(c.get("Id", ""))] = Container(id=str(c.get("Id", "")), started_at=_started(c))
    except (json.JSONDecodeError, AttributeError, TypeError):
        details = {}
    out = {}
    for service, short in ids.items():
        full = next((d for i, d in details.items() if i.startswith(short)), None)
        out[service] = full or Container(id=short, started_at=None)
    return out


def with_container(target: Target, containers: dict[str, Container]) -> Target:
    c = containers.get(target.name)
    if target.runtime != "compose" or c is None:
        return target
    return replace(target, container_id=c.id, started_at=c.started_at)


def _started(inspect: dict) -> float | None:
    state = inspect.get("State") or {}
    if not state.get("Running"):
        return None
    stamp = str(state.get("StartedAt") or "")
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def _run(argv: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None

"""One status row per service, as its runtime sees it: container state and health, or the native pid.

`sparkserve status`, `monitor` and `doctor` read these rows; the engine says where its health
answers (`Engine.health_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkserve.errors import UserError
from sparkserve.runtime import native

if TYPE_CHECKING:
    from sparkserve.runtime.docker import ServiceState
    from sparkserve.stack.stackplan import PlannedStack

PROBE_TIMEOUT_S = 2.0  # one health probe; all services are probed at once, so status takes this at most


def probe_all(urls: dict[str, str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, bool]:
    """Whether each URL answers 2xx, all probed at once within `timeout` in total: one hung
    engine costs `timeout`, not a queue of them."""
    import asyncio

    import httpx

    async def one(client: httpx.AsyncClient, url: str) -> bool:
        try:
            return (await asyncio.wait_for(client.get(url), timeout)).is_success
        except (httpx.HTTPError, TimeoutError, OSError):
            return False

    async def every() -> dict[str, bool]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False) as client:
            answers = await asyncio.gather(*(one(client, url) for url in urls.values()))
        return dict(zip(urls, answers, strict=True))

    return asyncio.run(every()) if urls else {}


def health_url(engine: str, url: str) -> str:
    """Where the engine says it is alive (`Engine.health_path`)."""
    from sparkserve.engines import get_engine

    return url + get_engine(engine).health_path


def answers(engine: str, url: str) -> bool:
    """Whether the engine's health path answers 2xx at `url` now."""
    return probe_all({"one": health_url(engine, url)}).get("one", False)


def native_rows(loaded: PlannedStack, names: list[str]) -> list[dict[str, Any]]:
    """One row per native service: state, pid, uptime, health, model; a crash brings its log tail."""
    from sparkserve.secrets import known_values

    hidden = known_values(loaded.path.parent / native.ENV_FILE)
    services = loaded.stack.services
    seen_by = {name: native.observe(loaded.path, name) for name in names}
    urls = {name: native.service_url(loaded.stack.spec.stack.bind, services[name].port) for name in names}
    answered = probe_all({name: health_url(services[name].engine, urls[name])
                          for name in names if seen_by[name].state == native.RUNNING})
    out = []
    for name in names:
        svc, url, seen = services[name], urls[name], seen_by[name]
        running = seen.state == native.RUNNING
        ok = answered.get(name, False)
        record = seen.record
        row: dict[str, Any] = {
            "service": name, "engine": svc.engine, "runtime": "native", "state": seen.state,
            "health": ("healthy" if ok else "not answering") if running else "",
            "url": url, "answers": ok,
            "pid": record.pid if record else None,
            "uptime_s": round(native.uptime_s(record), 1) if record and running else None,
            "model": native.served_name(svc),
            "log": str(native.log_file(loaded.path, name)),
            "detail": seen.detail,
        }
        if seen.state == native.CRASHED:
            row["leftover_pids"] = list(seen.leftover)
            row["log_tail"] = native.log_tail(row["log"], 10, hidden)
        out.append(row)
    return out


def service_rows(loaded: PlannedStack) -> list[dict[str, Any]]:
    """Every service of the stack, compose and native, in stack order."""
    services = loaded.stack.services
    natives = {r["service"]: r for r in native_rows(loaded, [n for n, s in services.items() if s.runtime == "native"])}
    composed = [n for n, s in services.items() if s.runtime == "compose"]
    states, no_state = compose_states(Path(loaded.path)) if composed else ({}, "not created")
    bind = loaded.stack.spec.stack.bind
    urls = {n: native.service_url(bind, services[n].port) for n in composed}
    answered = probe_all({n: health_url(services[n].engine, urls[n]) for n in composed})
    rows = []
    for name, svc in services.items():
        if name in natives:
            rows.append(natives[name])
            continue
        state = states.get(name)
        rows.append({
            "service": name, "engine": svc.engine, "runtime": svc.runtime,
            "state": state.state if state else no_state,
            "health": state.health if state else "", "url": urls[name], "answers": answered.get(name, False),
        })
    return rows


def compose_states(stack_file: Path) -> tuple[dict[str, ServiceState], str]:
    """Compose's view of each service, and what to show for a service without a container.

    A stack that was never rendered, or a host where Docker does not answer, still gets a row
    per service (the services then read as down) rather than an error.
    """
    from sparkserve.runtime.compose import COMPOSE_FILE
    from sparkserve.runtime.docker import Compose

    compose_file = stack_file.parent / COMPOSE_FILE
    if not compose_file.is_file():
        return {}, "not rendered"
    try:
        return {s.service: s for s in Compose(compose_file).ps()}, "not created"
    except UserError as exc:
        return {}, f"n/a ({str(exc).split(';')[0]})"

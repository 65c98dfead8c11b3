"""The engines sparkserve knows: built-in ones load on first use, tests and plugins `register` more."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sparkserve.engines.base import Engine
from sparkserve.errors import unknown

# Modules that register their engines when imported; imported on first lookup so that
# `sparkserve --help` stays fast.
BUILTIN_MODULES = ("sparkserve.engines.vllm", "sparkserve.engines.ollama", "sparkserve.engines.planned")
# More modules to import, comma-separated: engines that live outside sparkserve (plugins, tests).
PLUGINS_ENV = "SPARKSERVE_ENGINE_MODULES"

_ENGINES: dict[str, Engine] = {}
_loaded = False


def register(engine: Engine) -> Engine:
    """Add (or replace) an engine; returns it so a module can write `ENGINE = register(MyEngine())`."""
    if not engine.name:
        raise ValueError(f"{engine!r} has no name")
    _ENGINES[engine.name] = engine
    return engine


def unregister(name: str) -> None:
    _ENGINES.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import os

    plugins = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for module in (*BUILTIN_MODULES, *plugins):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if module in BUILTIN_MODULES:
                raise
            from sparkserve.errors import UserError

            raise UserError(f"${PLUGINS_ENV} names {module!r}, which cannot be imported ({exc})") from None


def engines(*, runnable: bool | None = None) -> list[Engine]:
    """Every registered engine, or only those sparkserve can (or cannot) run."""
    _load_builtins()
    chosen = [e for e in _ENGINES.values() if runnable is None or e.runnable == runnable]
    return sorted(chosen, key=lambda e: e.order)


def engine_names(*, runnable: bool | None = None) -> list[str]:
    return [e.name for e in engines(runnable=runnable)]


def find_engine(name: str) -> Engine | None:
    """The engine called `name` (or one of its aliases, any case), or None."""
    _load_builtins()
    key = name.strip().lower()
    for engine in _ENGINES.values():
        if key == engine.name or key in engine.aliases:
            return engine
    return None


def get_engine(name: str) -> Engine:
    """The engine called `name`; an unknown name is a one-line UserError with the closest match."""
    engine = find_engine(name)
    if engine is None:
        names = engine_names()
        raise unknown("engine", name, names, hint="expected one of " + ", ".join(names))
    return engine


def engine_for_api(api: str) -> str | None:
    """The engine an API shape belongs to when only one engine speaks it (Ollama's own API); None for
    shared ones such as the OpenAI API."""
    owners = [e.name for e in engines(runnable=True) if api in e.bench_apis and e.own_api]
    return owners[0] if len(owners) == 1 else None


def identify_engine(http: Any, entry: Mapping[str, Any]) -> str | None:
    """The engine behind an OpenAI-compatible server, from its /v1/models entry or its own routes."""
    for engine in engines(runnable=True):
        if engine.owns_server(http, entry):
            return engine.name
    return None

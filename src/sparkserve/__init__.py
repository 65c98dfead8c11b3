"""sparkserve: plan, run, benchmark and watch local LLM inference services.

The public API, imported on first use so that `sparkserve --help` stays fast:

- engines: `Engine`, `get_engine`, `register`, `engines`
- planning: `get_profile`, `resolve_model`, `deployment`, `plan_service`, `Workload`
- stacks: `load_stack`, `load_planned`
- errors: `UserError`
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "sparkserve.engines.base",
    "get_engine": "sparkserve.engines.registry",
    "register": "sparkserve.engines.registry",
    "engines": "sparkserve.engines.registry",
    "get_profile": "sparkserve.hardware.catalog",
    "resolve_model": "sparkserve.models.catalog",
    "deployment": "sparkserve.plan.planner",
    "plan_service": "sparkserve.plan.planner",
    "Workload": "sparkserve.plan.speed",
    "load_stack": "sparkserve.stack.load",
    "load_planned": "sparkserve.stack.stackplan",
    "UserError": "sparkserve.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparkserve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

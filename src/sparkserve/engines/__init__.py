"""Engines: what sparkserve knows about each inference server, behind one interface.

`get_engine("vllm")` returns an `Engine` (engines/base.py); `register(engine)` adds one.
"""

from sparkserve.engines.base import ComposeFragment, Engine, NativeCommand, PlanningOnly
from sparkserve.engines.registry import engine_names, engines, find_engine, get_engine, register, unregister

__all__ = ["ComposeFragment", "Engine", "NativeCommand", "PlanningOnly", "engine_names", "engines", "find_engine",
           "get_engine", "register", "unregister"]

"""Demo and test helpers: things that let sparkserve run a real engine with no download."""

from __future__ import annotations

from typing import Any

__all__ = ["write_tiny_model"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m sparkserve.demo.tinymodel` runs without a runpy warning.
    if name == "write_tiny_model":
        from sparkserve.demo.tinymodel import write_tiny_model

        return write_tiny_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

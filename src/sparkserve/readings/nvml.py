"""NVIDIA's management library (nvidia-ml-py), tolerant of every way it can be missing.

No library, no driver, no device, a call the GPU does not support (GB10 answers NOT_SUPPORTED for
memory: it is unified) or a permission refused: each reading is then None, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparkserve.units import GIB


def load(module: Any = None) -> tuple[Any, str | None]:
    """(the initialised NVML module, None), or (None, why not). `module` replaces pynvml (tests)."""
    nvml = module
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return None, "nvidia-ml-py is not installed"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML unavailable: {exc or type(exc).__name__}"
    return nvml, None


def read(fn: Callable[..., Any], *args: Any) -> Any:
    """One NVML reading, or None on any error (NOT_SUPPORTED, NO_PERMISSION, missing call)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVML raises many NVMLError subclasses; each means n/a
        return None


def shutdown(nvml: Any) -> None:
    if nvml is not None:
        read(nvml.nvmlShutdown)


class Nvml:
    """Every GPU's handle, held open for repeated readings (bench samples every second)."""

    def __init__(self, module: Any = None) -> None:
        self.nvml, _ = load(module)
        count = read(self.nvml.nvmlDeviceGetCount) if self.nvml is not None else None
        handles = [read(self.nvml.nvmlDeviceGetHandleByIndex, i) for i in range(count or 0)]
        self.handles: list[Any] = [h for h in handles if h is not None]

    def read(self) -> dict[str, float | None]:
        """Utilisation (mean over GPUs, %), memory used (GiB, summed) and power (W, summed); None where
        no GPU answers (memory on GB10)."""
        if not self.handles:
            return {}
        n = self.nvml
        utils = [u.gpu for u in (read(n.nvmlDeviceGetUtilizationRates, h) for h in self.handles) if u is not None]
        mems = [m.used / GIB for m in (read(n.nvmlDeviceGetMemoryInfo, h) for h in self.handles) if m is not None]
        powers = [p / 1000.0 for p in (read(n.nvmlDeviceGetPowerUsage, h) for h in self.handles) if p is not None]
        return {"gpu_util_pct": sum(utils) / len(self.handles) if utils else None,
                "gpu_mem_used_gib": sum(mems) if mems else None,
                "gpu_power_w": sum(powers) if powers else None}

    def close(self) -> None:
        shutdown(self.nvml)
        self.nvml, self.handles = None, []

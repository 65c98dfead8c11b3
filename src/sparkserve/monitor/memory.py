"""Host memory from /proc/meminfo: on a DGX Spark this is also the GPU's memory.

NVML reports GB10 memory as NOT_SUPPORTED, so MemAvailable is the headroom that matters,
and page cache is worth showing on its own: it counts as available yet competes with CUDA
allocations while a model loads (field notes).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkserve.readings.meminfo import read_meminfo


@dataclass(frozen=True)
class HostMemory:
    """Bytes; None where /proc/meminfo lacks the field (or is unreadable)."""

    total: int | None = None
    available: int | None = None
    free: int | None = None
    page_cache: int | None = None  # Cached + Buffers - Shmem: clean file pages the kernel can drop
    swap_total: int | None = None
    swap_free: int | None = None

    @property
    def used(self) -> int | None:
        return self.total - self.available if self.total is not None and self.available is not None else None


def read_host_memory(path: str = "/proc/meminfo") -> HostMemory:
    info = read_meminfo(path)
    cache = None
    if "Cached" in info:
        cache = max(0, info["Cached"] + info.get("Buffers", 0) - info.get("Shmem", 0))
    return HostMemory(
        total=info.get("MemTotal"),
        available=info.get("MemAvailable"),
        free=info.get("MemFree"),
        page_cache=cache,
        swap_total=info.get("SwapTotal"),
        swap_free=info.get("SwapFree"),
    )

"""/proc/meminfo: the one reader. Values in bytes; {} when unreadable (not Linux, sandboxed)."""

from __future__ import annotations

import os

from sparkserve.units import GIB

MEMINFO = "/proc/meminfo"
MEMINFO_ENV = "SPARKSERVE_MEMINFO"  # another file to read instead (tests, containers with a bind-mounted copy)
# Drops clean page cache, which MemAvailable counts but a starting CUDA allocation competes with.
DROP_CACHES = "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches"


def meminfo_path() -> str:
    return os.environ.get(MEMINFO_ENV) or MEMINFO


def read_meminfo(path: str = MEMINFO) -> dict[str, int]:
    """/proc/meminfo as bytes per key; {} when unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in lines:
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        out[key.strip()] = int(parts[0]) * (1024 if unit == "kb" else 1)
    return out


def mem_available_gib(path: str = MEMINFO) -> float | None:
    """MemAvailable in GiB, or None when it cannot be read."""
    value = read_meminfo(path).get("MemAvailable")
    return value / GIB if value is not None else None


def page_cache_bytes(meminfo: dict[str, int]) -> int:
    """Clean page cache that could be dropped: Cached + Buffers - Shmem (shared memory is not droppable)."""
    return max(0, meminfo.get("Cached", 0) + meminfo.get("Buffers", 0) - meminfo.get("Shmem", 0))

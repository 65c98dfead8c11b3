"""Watch MemAvailable while a native service starts, and stop it before the host runs out.

On a DGX Spark the GPU allocates from the same memory as the OS: when vLLM's start-up takes
too much, the whole host freezes instead of one process failing (vLLM issues #46307, #56824).
A watcher thread reads /proc/meminfo a few times a second from the moment the engine starts
until it answers, and kills the engine's process group as soon as MemAvailable falls below
the floor. The path is a parameter (and $SPARKSERVE_MEMINFO for the CLI) so a test can drive
the guard with a file it rewrites.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sparkserve.readings.meminfo import DROP_CACHES, meminfo_path, read_meminfo
from sparkserve.units import GIB


@dataclass(frozen=True)
class Floor:
    """The MemAvailable floor: a number of GiB, or a share of MemTotal ("10%")."""

    setting: float | str

    def bytes(self, meminfo: dict[str, int]) -> int | None:
        """The floor in bytes; None when a percentage cannot be applied (no MemTotal)."""
        if isinstance(self.setting, str):
            total = meminfo.get("MemTotal")
            return int(total * float(self.setting.rstrip("%")) / 100) if total else None
        return int(self.setting * GIB)

    def describe(self, meminfo: dict[str, int]) -> str:
        floor = self.bytes(meminfo)
        if isinstance(self.setting, str) and floor is not None:
            return f"{self.setting} of MemTotal = {floor / GIB:.1f} GiB"
        return f"{self.setting:g} GiB" if not isinstance(self.setting, str) else self.setting


def below_floor(floor: Floor, meminfo: dict[str, int]) -> tuple[float, str] | None:
    """(MemAvailable GiB, floor text) when MemAvailable is below the floor; None otherwise or
    when /proc/meminfo is unreadable (then there is nothing to guard with)."""
    available = meminfo.get("MemAvailable")
    limit = floor.bytes(meminfo)
    if available is None or limit is None or available >= limit:
        return None
    return available / GIB, floor.describe(meminfo)


def low_memory_message(name: str, available_gib: float, floor_text: str, *, starting: bool) -> str:
    """One line: what was seen, the floor, and the fixes."""
    what = "stopped it while it started" if starting else "did not start it"
    return (f"{name}: MemAvailable is {available_gib:.1f} GiB, below the floor of {floor_text} "
            f"([stack] min_mem_available_gib); sparkserve {what} so the host does not run out of memory. "
            f"Lower gpu_memory_utilization or max_model_len in services.{name}.args, stop other memory users, "
            f"or drop the page cache ({DROP_CACHES})")


class MemoryGuard:
    """A thread that calls `on_breach(message)` once, the first time MemAvailable falls below the floor."""

    def __init__(self, name: str, floor: Floor, on_breach: Callable[[str], None], *, path: str | None = None,
                 interval: float = 0.25):
        self.name = name
        self.floor = floor
        self.path = path or meminfo_path()
        self.interval = interval
        self.on_breach = on_breach
        self.tripped: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"memguard-{name}", daemon=True)

    def check(self) -> str | None:
        """The breach message when MemAvailable is below the floor now, else None."""
        low = below_floor(self.floor, read_meminfo(self.path))
        return low_memory_message(self.name, *low, starting=True) if low else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            message = self.check()
            if message:
                self.tripped = message
                self.on_breach(message)
                return

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

"""What /proc says about a service: its processes, resident memory, age, and who holds a port.

Process identity and groups come from `runtime.procs`; this adds the readings.

Every reading is optional: a process may exit between two reads, another user's processes
may be unreadable, and /proc may be missing (not Linux). None means n/a, never an error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sparkserve.runtime.procs import group_members, proc_info

PROC = Path("/proc")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def service_processes(pid: int) -> list[int]:
    """`pid` and the rest of its process group (vLLM's API server, engine core and workers)."""
    info = proc_info(pid)
    if info is None or not info.alive:
        return []
    return sorted({pid, *(m.pid for m in group_members(info.pgid))})


def rss_bytes(pid: int) -> int | None:
    """Resident memory of one process (VmRSS); None once it is gone or unreadable."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                parts = line.split()
                return int(parts[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None  # kernel threads have no VmRSS


def summed_rss_bytes(pids: list[int]) -> int | None:
    """Summed RSS; pages shared between processes count once per process, so this is an upper bound."""
    values = [v for v in (rss_bytes(p) for p in pids) if v is not None]
    return sum(values) if values else None


def uptime_s(pid: int) -> float | None:
    """Seconds since `pid` started: its start tick (stat field 22) after the boot time in /proc/stat."""
    info = proc_info(pid)
    if info is None or not info.alive:
        return None
    try:
        btime = next(int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    started = btime + info.start_ticks / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.time() - started)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The process holding a TCP listening socket on `port` in this network namespace, if readable.

    Finds a native service that sparkserve did not start. Behind Docker's port publishing
    this is docker-proxy, so callers use it for native services only.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        entries = sorted((e for e in os.listdir(PROC) if e.isdigit()), key=int)
    except OSError:
        return None
    for entry in entries:
        fd_dir = PROC / entry / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    return int(entry)
            except OSError:
                continue
    return None


def container_of(pid: int) -> str | None:
    """The 64-hex Docker container id in a process's cgroup path, or None outside a container."""
    try:
        text = (PROC / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    for part in text.replace("/", " ").replace(":", " ").replace("-", " ").replace(".", " ").split():
        if len(part) == 64 and all(c in "0123456789abcdef" for c in part):
            return part
    return None

"""Processes from /proc: who a pid is, its group, resident memory, age, cgroup, and who holds a port.

A pid file alone proves nothing: the process may be gone, a zombie, or the pid may now belong
to another program. A process is "ours" only while its start time (field 22 of
/proc/<pid>/stat) and its command line match what was recorded when it started.

Every reading is optional: a process may exit between two reads, another user's processes
may be unreadable, and /proc may be missing (not Linux). None means n/a, never an error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    """The parts of /proc/<pid>/stat and cmdline that identify a process."""

    pid: int
    state: str  # R, S, D, Z (zombie), T, ...
    pgid: int
    start_ticks: int
    cmdline: tuple[str, ...]

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def proc_info(pid: int) -> ProcInfo | None:
    """The process `pid`, or None when there is none (or it vanished while being read)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        state, pgid, start = fields[0], int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None
    cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcInfo(pid=pid, state=state, pgid=pgid, start_ticks=start, cmdline=cmdline)


def runs_argv(info: ProcInfo, argv: list[str] | tuple[str, ...]) -> bool:
    """Whether the process runs `argv` (compared with secret values redacted on both sides); a `#!`
    script shows its interpreter first, so only the tail has to match."""
    from sparkserve.secrets import redact_argv

    argv = tuple(redact_argv(argv))
    return bool(argv) and tuple(redact_argv(info.cmdline))[-len(argv):] == argv


def group_members(pgid: int) -> list[ProcInfo]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None and info.pgid == pgid and info.alive:
                members.append(info)
    return members


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

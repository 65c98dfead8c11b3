"""Processes by pid and process group, read from /proc: is it still ours, and stop all of it.

A pid file alone proves nothing: the process may be gone, a zombie, or the pid may now belong
to another program. A process is "ours" only while its start time (field 22 of
/proc/<pid>/stat) and its command line match what was recorded when it started. Engines fork
workers (vLLM's EngineCore and Worker) into the same process group, so stopping means
signalling the whole group and waiting until no member is left.
"""

from __future__ import annotations

import os
import signal
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
    """Whether the process runs `argv`; a `#!` script shows its interpreter first, so only the
    tail has to match."""
    argv = tuple(argv)
    return bool(argv) and info.cmdline[-len(argv):] == argv


def group_members(pgid: int) -> list[ProcInfo]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None and info.pgid == pgid and info.alive:
                members.append(info)
    return members


def _reap(pids: list[int]) -> None:
    """Collect exit statuses of our own children so they do not linger as zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_group_gone(pgid: int, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        members = group_members(pgid)
        if not members:
            return True
        _reap([m.pid for m in members] + [pgid])
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def stop_group(pgid: int, *, timeout: float = 30.0, kill_at_once: bool = False) -> str:
    """Stop every process of the group: SIGTERM, then SIGKILL after `timeout` seconds.

    Returns "gone" (nothing was running), "terminated" or "killed". `kill_at_once` skips the
    grace period: for the memory guard, where freeing memory now matters more than a clean exit.
    """
    _reap([pgid])
    if not group_members(pgid):
        return "gone"
    if not kill_at_once:
        _signal_group(pgid, signal.SIGTERM)
        if wait_group_gone(pgid, timeout):
            return "terminated"
    _signal_group(pgid, signal.SIGKILL)
    if not wait_group_gone(pgid, 10.0):
        left = ", ".join(str(m.pid) for m in group_members(pgid))
        raise OSError(f"processes {left} of group {pgid} survived SIGKILL")
    return "killed"

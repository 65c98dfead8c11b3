"""Stop a process group and all of it; which processes are there is read by readings/proc.py. Engines fork
workers (vLLM's EngineCore and Worker) into the same process group, so stopping means
signalling the whole group and waiting until no member is left.

A recorded process group is only a number: after a crash it may hold unrelated programs (or be
our own group, or 1). Engines sparkserve starts carry `SPARKSERVE_ID=<marker>` in their
environment, which every worker inherits. `stop_group(..., marker=...)` signals a group only
when it is provably the one sparkserve started: its leader (the log pump) alive with the recorded
start time and the marker, or a live member started after it that carries the marker. Linux does
not reuse a number as a pid while a process still has it as its process group, so a group with
one such member has been ours since it was created. Process group 0, 1 and our own are never
signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from sparkserve.readings.proc import PROC, ProcInfo, group_members, proc_info, runs_argv

MARKER_ENV = "SPARKSERVE_ID"
__all__ = ["PROC", "ProcInfo", "group_members", "proc_info", "runs_argv", "stop_group", "wait_group_gone",
           "check_group", "carries_marker", "marked_members", "UnsafeGroup", "MARKER_ENV"]


class UnsafeGroup(ValueError):
    """A process group sparkserve must never signal: 0, 1, negative, or its own."""


def check_group(pgid: object) -> int:
    """`pgid` when it names a group sparkserve may signal; UnsafeGroup otherwise."""
    if isinstance(pgid, bool) or not isinstance(pgid, int) or pgid <= 1:
        raise UnsafeGroup(f"process group {pgid!r} is not one sparkserve started (expected an integer > 1)")
    if pgid == os.getpgrp():
        raise UnsafeGroup(f"process group {pgid} is sparkserve's own")
    return pgid


def carries_marker(pid: int, marker: str) -> bool:
    """Whether the process's environment holds SPARKSERVE_ID=<marker> (unreadable: no)."""
    if not marker:
        return False
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_ENV}={marker}".encode() in environ.split(b"\0")


def marked_members(pgid: int, marker: str, since_ticks: int = 0) -> list[ProcInfo]:
    """Live members of the group that carry the marker and started no earlier than `since_ticks`."""
    return [m for m in group_members(pgid) if m.start_ticks >= since_ticks and carries_marker(m.pid, marker)]


def _reap(pids: list[int]) -> None:
    """Collect exit statuses of our own children so they do not linger as zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(check_group(pgid), sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_is_ours(pgid: int, marker: str, since_ticks: int) -> bool:
    """Whether group `pgid` is the one sparkserve started with `marker` (see the module's docstring).

    Workers may rewrite their own /proc environ (setproctitle), so the leader while it lives, or
    any member that still shows the marker, vouches for the whole group."""
    leader = proc_info(pgid)
    if leader is not None and leader.alive and leader.start_ticks == since_ticks and carries_marker(pgid, marker):
        return True
    return bool(marked_members(pgid, marker, since_ticks))


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


def stop_group(pgid: int, *, timeout: float = 30.0, kill_at_once: bool = False, marker: str | None = None,
               since_ticks: int = 0) -> str:
    """Stop every process of the group: SIGTERM, then SIGKILL after `timeout` seconds.

    Returns "gone" (nothing was running), "terminated", "killed", or "not ours". `kill_at_once`
    skips the grace period: for the memory guard, where freeing memory now matters more than a
    clean exit. With `marker`, the group is signalled only when it is provably the one started
    with it (group_is_ours); once it is, it stays ours while any member lives (Linux does not reuse
    the number meanwhile). Group 0, 1 and our own raise UnsafeGroup.
    """
    check_group(pgid)
    _reap([pgid])
    if not group_members(pgid):
        return "gone"
    if marker is not None and not group_is_ours(pgid, marker, since_ticks):
        return "not ours"
    if not kill_at_once:
        _signal_group(pgid, signal.SIGTERM)
        if wait_group_gone(pgid, timeout):
            return "terminated"
    _signal_group(pgid, signal.SIGKILL)
    if not wait_group_gone(pgid, 10.0):
        left = ", ".join(str(m.pid) for m in group_members(pgid))
        raise OSError(f"processes {left} of group {pgid} survived SIGKILL")
    return "killed"


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back for the block and deliver them after it: a start is
    never cut between its engine existing and its pid file (and the caller's cleanup) knowing it.

    The handlers are swapped rather than the signals masked: a mask holds only this thread, and any
    other thread (an executor's, a reader's) would take the signal and run the handler at once."""
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    caught: list[int] = []

    def note(signum: int, frame: object) -> None:  # noqa: ARG001
        caught.append(signum)

    try:
        previous = {sig: signal.signal(sig, note) for sig in held}
    except ValueError:  # not the main thread: signals cannot be handled here at all
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            handler = previous[signal.Signals(caught[0])]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])

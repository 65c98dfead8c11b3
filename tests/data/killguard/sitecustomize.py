"""A safety net for tests that hand sparkserve hostile pid files (pgid 0, 1, its own group).

Put on PYTHONPATH of a sparkserve process under test: a signal to process group 0 or 1, to the
process's own group, to -1, or to a pid listed in $KILLGUARD_PROTECTED is refused (OSError, and
a line in $KILLGUARD_LOG) instead of sent. Without it, a regression in those tests would signal
every process of the machine. Anything else passes through to the real call.
"""

import os

_killpg, _kill = os.killpg, os.kill


def _protected() -> set[int]:
    return {int(x) for x in os.environ.get("KILLGUARD_PROTECTED", "").split(",") if x.strip()}


def _refuse(what: str) -> None:
    log = os.environ.get("KILLGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(what + "\n")
    raise OSError(f"killguard refused {what}")


def killpg(pgid: int, sig: int) -> None:
    if pgid <= 1 or pgid == os.getpgrp() or pgid in _protected():
        _refuse(f"killpg({pgid}, {sig})")
    _killpg(pgid, sig)


def kill(pid: int, sig: int) -> None:
    group = -pid if pid < 0 else None
    risky = pid in (-1, 0) or pid in _protected() or (group is not None and (group <= 1 or group == os.getpgrp()
                                                                              or group in _protected()))
    if risky and sig != 0:
        _refuse(f"kill({pid}, {sig})")
    _kill(pid, sig)


os.killpg, os.kill = killpg, kill

"""Errors a user can fix: each renders as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""

    exit_code = 2


# Exit codes scripts can rely on (README "Exit codes"): 2 is a UserError.
EXIT_DOES_NOT_FIT = 3  # `plan`: the plan was printed, and it does not fit or would not start


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Closest spellings of `name` among `choices`, case-insensitively."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    if not found:
        needle = name.lower().split("/")[-1]
        found = [c for c in lowered if needle and needle in c][:n]
    return [lowered[f] for f in found]


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> UserError:
    """An error for an unknown catalog entry, with the closest matches and how to fix it."""
    matches = closest(name, choices)
    msg = f"unknown {kind} {name!r}"
    if matches:
        msg += f"; closest: {', '.join(matches)}"
    if hint:
        msg += f"; {hint}"
    return UserError(msg)


def read_json(file: Path, label: str) -> object:
    """A JSON file's contents; a missing, unreadable or non-JSON file is a UserError starting with `label`."""
    import json

    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{label}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UserError(f"{label}: not JSON ({exc})") from None

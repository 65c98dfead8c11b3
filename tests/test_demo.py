"""`sparkserve demo` end to end with the real CPU vLLM (the session fixtures' venv and tiny model),
its Ctrl-C path, and its refusals."""

from __future__ import annotations

import signal
import sys

import pytest

from native_kit import cli_env, group_alive, pgrep, read_pid_file, run_cli, start_cli, wait_for
from sparkserve.errors import UserError


def demo_env(vllm_venv) -> dict[str, str]:
    # The demo runs scripts/setup-vllm-cpu.sh, which finds the fixture's complete install at once.
    return cli_env(SPARKSERVE_VLLM_VENV=str(vllm_venv))


def test_demo_runs_the_main_job_and_stops_everything(vllm_venv, tiny_model, tmp_path):
    work = tmp_path / "demo"
    result = run_cli(tmp_path, "demo", "--dir", str(work), "--model-dir", str(tiny_model), "--requests", "3",
                     env=demo_env(vllm_venv))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    steps = ["1. tiny model", "2. engine", "3. stack", "plan for NVIDIA DGX Spark (GB10)", "4. start",
             "checking the arguments with the installed vLLM's parser", "ready tiny: http://127.0.0.1:",
             "5. chat", "whole:", "streamed:", "6. benchmark", "7. /metrics", "8. measured beside the plan",
             "stopped tiny (pid ", "done: everything the demo started is stopped"]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, [s for s, p in zip(steps, positions, strict=False) if p == -1]
    assert positions == sorted(positions)
    assert "prompt + 24 generated tokens" in out and "24 tokens in" in out
    assert "families, parsed with prometheus_client" in out and "requests ok " in out
    for row in ("decode, one request", "time to first token", "KV cache"):
        assert row in out
    assert "2,097,152 tokens (VLLM_CPU_KVCACHE_SPACE)" in out
    stack = (work / "sparkserve.toml").read_text()
    assert 'runtime = "native"' in stack and 'hardware = "dgx-spark"' in stack and str(vllm_venv) in stack
    assert read_pid_file(work, "tiny") is None
    port = stack.split("port = ")[1].split("\n")[0]
    assert not pgrep(f"vllm serve .*--port {port}$")


def test_ctrl_c_stops_the_demos_engine(vllm_venv, tiny_model, tmp_path):
    work = tmp_path / "demo"
    demo = start_cli(tmp_path, "demo", "--dir", str(work), "--model-dir", str(tiny_model), env=demo_env(vllm_venv))
    record = wait_for("vLLM to start", lambda: read_pid_file(work, "tiny") or demo.poll() is not None)
    assert isinstance(record, dict), demo.communicate()
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=300)
    assert demo.returncode == 130, out + err
    assert "interrupted: the demo's vLLM is stopped and its state removed" in out
    assert not group_alive(record["pgid"])
    assert read_pid_file(work, "tiny") is None


def test_demo_refuses_bad_options_before_writing_anything(tmp_path):
    work = tmp_path / "demo"
    for args, message in ((["--port", "70000"], "error: --port must be 1-65535 (or 0 for a free one), got 70000\n"),
                          (["--requests", "0"], "error: --requests must be at least 1, got 0\n")):
        result = run_cli(tmp_path, "demo", "--dir", str(work), *args)
        assert result.returncode == 2 and result.stderr == message
    assert not work.exists()


def test_without_the_setup_script_the_demo_says_what_to_do(monkeypatch):
    from rich.console import Console

    from sparkserve.commands import demo

    monkeypatch.setattr(demo, "setup_script", lambda: None)
    monkeypatch.delenv("SPARKSERVE_VLLM", raising=False)
    with pytest.raises(UserError, match=r"scripts/setup-vllm-cpu.sh is not part of this installation .*installed from "
                                        r"a wheel.*bash scripts/demo.sh.*SPARKSERVE_VLLM"):
        demo.ensure_cpu_vllm(Console(file=sys.stderr))
    monkeypatch.setenv("SPARKSERVE_VLLM", sys.executable)
    assert demo.ensure_cpu_vllm(Console(file=sys.stderr)) == sys.executable

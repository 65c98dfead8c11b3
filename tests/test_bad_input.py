"""Input that used to crash (a binary stack file, inf, a NUL, a non-UTF-8 .env) ends in one line
and exit 2 with nothing written or started; exposure and a readable .env are warned about;
`logs` streams a large log with secrets redacted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from native_kit import events, run_cli
from test_native import SECRET, Project

VALID = """
[stack]
hardware = "h100-sxm"
{stack}

[services.s]
engine = "vllm"
model = "Qwen/Qwen3-0.6B"
port = 8000
{service}
"""


def _one_line_exit_2(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "not UTF-8 text"),
    (VALID.format(stack="min_mem_available_gib = inf", service="").encode(),
     "stack.min_mem_available_gib: expected a finite number"),
    (VALID.format(stack="min_mem_available_gib = nan", service="").encode(), "expected a finite number"),
    (VALID.format(stack="", service='env = { A = "x\\u0000y" }').encode(), "services.s.env.A: the value holds a NUL"),
    (VALID.format(stack="", service='args = { served_model_name = "a\\u0000" }').encode(), "holds a NUL"),
    (VALID.format(stack="", service="args = { gpu_memory_utilization = inf }").encode(), "expected a finite number"),
])
@pytest.mark.parametrize("command", ["plan", "render", "up"])
def test_bad_stack_files_end_in_one_line(tmp_path, content, expected, command):
    (tmp_path / "sparkserve.toml").write_bytes(content)
    stack = ["--stack", "sparkserve.toml"] if command == "plan" else []
    assert expected in _one_line_exit_2(run_cli(tmp_path, command, *stack))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparkserve.toml"]


@pytest.mark.parametrize(("env", "expected"), [
    (b"HF_TOKEN=\xff\xfe\n", "not UTF-8 text"),
    (b"HF_TOKEN=abc\x00def\n", "line 1 holds a NUL"),
])
def test_a_bad_env_file_ends_in_one_line_and_starts_nothing(tmp_path, env, expected):
    project = Project(tmp_path)
    project.write()
    (project.dir / ".env").write_bytes(env)
    assert expected in _one_line_exit_2(project.run("up"))
    assert not events(project.calls, "exec") and project.record() is None


def test_exposure_and_a_readable_env_are_warned_before_anything_starts(tmp_path):
    """bind 0.0.0.0 for Ollama (no authentication) and a .env others can read: warned, with the fixes.
    The port is busy, so nothing is started (and nothing listens on every interface)."""
    import socket

    project = Project(tmp_path)
    project.write('bind = "0.0.0.0"')
    (project.dir / ".env").chmod(0o644)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", project.port))
        busy.listen()
        result = project.run("up")
    assert result.returncode == 2
    out = result.stdout
    assert "WARNING: ollama listens on 0.0.0.0 and ollama has no authentication" in out
    assert 'set bind = "127.0.0.1" under [stack]' in out
    assert "is readable by other users (mode 644)" in out and "chmod 600" in out
    assert SECRET not in out + result.stderr
    assert not events(project.calls, "exec")


def test_exposure_warnings_by_engine_and_key():
    from sparkserve.runtime.exposure import endpoint, warnings

    assert warnings("127.0.0.1", {"a": "vllm", "b": "ollama"}, {}) == []
    loud, = warnings("0.0.0.0", {"a": "vllm"}, {})
    assert loud.startswith("WARNING: a listens on 0.0.0.0 without an API key") and "VLLM_API_KEY" in loud
    quiet, = warnings("0.0.0.0", {"a": "vllm"}, {"VLLM_API_KEY": "k"})
    assert quiet.startswith("warning: a listens on 0.0.0.0")
    assert endpoint("0.0.0.0", 8000, "/v1") == "http://0.0.0.0:8000/v1 (every interface; from this host http://127.0.0.1:8000/v1)"
    assert endpoint("127.0.0.1", 8000) == "http://127.0.0.1:8000"


def test_up_prints_the_address_it_binds(tmp_path):
    project = Project(tmp_path)
    project.write('bind = "127.0.0.1"')
    result = project.run("up")
    assert result.returncode == 0, result.stderr
    assert f"ollama: http://127.0.0.1:{project.port}\n" in result.stdout and "localhost" not in result.stdout
    assert project.run("down").returncode == 0


def _logs_rss(project: Project) -> tuple[int, int, bool, int]:
    """`sparkserve logs ollama` in a child: exit code, lines printed, whether the secret leaked, peak RSS (bytes)."""
    code = ("import resource, subprocess, sys; "
            "p = subprocess.run([sys.executable, '-m', 'sparkserve.cli', 'logs', 'ollama'], stdout=subprocess.PIPE); "
            "print(p.returncode, p.stdout.count(b'\\n'), int(b'" + SECRET + "' in p.stdout), "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], cwd=project.dir, env=project.env(), capture_output=True,
                          text=True, timeout=600)
    rc, lines, leaked, rss_kib = (int(x) for x in done.stdout.split())
    return rc, lines, bool(leaked), rss_kib * 1024


def test_logs_streams_a_large_log_with_secrets_redacted(tmp_path):
    project = Project(tmp_path)
    project.write()
    assert project.run("up").returncode == 0
    try:
        small = _logs_rss(project)
        log = project.dir / ".sparkserve" / "ollama.log"
        with open(log, "ab") as fh:  # 48 MiB of engine output, one line naming the secret
            fh.write(f"token in a line: {SECRET}\n".encode())
            block = (b"y" * 1023 + b"\n") * 1024
            for _ in range(48):
                fh.write(block)
        rc, lines, leaked, rss = _logs_rss(project)
        assert rc == 0 and lines >= 48 * 1024 and not leaked
        assert rss - small[3] < log.stat().st_size / 4  # streamed: the log never was in memory
        tail = project.run("logs", "ollama", "--tail", "3")
        assert tail.returncode == 0 and SECRET not in tail.stdout and tail.stdout.count("\n") == 3
    finally:
        project.run("down")


"""Property-based tests: whatever bytes a stack file, a .env file or a pid file holds, and whatever
a user types as a bench value, sparkserve answers with one line (UserError, exit 2) or works;
never a traceback, never a file written, never a process signalled that it did not start.

Few examples per property (CI time); hypothesis shrinks any failure to a small input.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkserve.errors import UserError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID_STACK = """[stack]
hardware = "h100-sxm"
bind = "127.0.0.1"
min_mem_available_gib = 4

[services.vllm-qwen3]
engine = "vllm"
model = "Qwen/Qwen3-0.6B"
port = 8000
runtime = "native"
args = { max_model_len = 4096 }
env = { HF_TOKEN = "${HF_TOKEN}" }

[services.ollama]
engine = "ollama"
model = "qwen3:0.6b"
port = 11434
"""

# TOML-ish pieces a careless user (or a corrupted file) produces.
TOKENS = st.sampled_from(["=", "[", "]", "{", "}", '"', "'", "\\u0000", "\x00", "inf", "nan", "-inf", "1e999",
                          "true", "0", "-1", "65536", "api_key", "--api-key", "hf_token", "\n", "#", ",", "services",
                          "stack", "args", "env", "port", "bind", "0.0.0.0", "::", "\xff", "é", "${X}", "$$", "."])


def _mutated(data) -> bytes:
    text = VALID_STACK
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(TOKENS) + text[at + data.draw(st.integers(0, 3)):]
    raw = text.encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.binary(max_size=8)) + raw[at:]
    return raw


def _load(raw: bytes, tmp: Path):
    from sparkserve.stack.load import load_stack

    path = tmp / "sparkserve.toml"
    path.write_bytes(raw)
    return load_stack(path)


@FUZZ
@given(st.data())
def test_any_stack_file_loads_or_fails_in_one_line(tmp_path, data):
    try:
        stack = _load(_mutated(data), tmp_path)
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(tmp_path / "sparkserve.toml"))
        return
    for svc in stack.services.values():  # what loaded is usable: no NUL, no inf, no secret in args
        from sparkserve import secrets

        assert all(isinstance(v, bool) or not secrets.is_secret_name(k) for k, v in svc.args.items())
        assert all("\0" not in v for v in svc.env.values())


@FUZZ
@given(st.binary(max_size=300))
def test_any_env_file_reads_or_fails_in_one_line(tmp_path, raw):
    from sparkserve.runtime.compose import read_env_file

    path = tmp_path / ".env"
    path.write_bytes(raw)
    try:
        values = read_env_file(path)
    except UserError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert all("\0" not in k + v for k, v in values.items())


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
FIELDS = ("pid", "pgid", "start_ticks", "argv", "engine", "url", "model", "started_at", "log", "marker",
          "group_start_ticks")


@pytest.fixture(scope="module")
def stranger():
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _pid_value(stranger_pid: int):
    # Only pids that are nobody's, 0/1/negative, our own group, or the stranger: the property is that
    # none of them is ever signalled, and no real process of this shared machine is put at risk.
    return st.sampled_from([0, 1, -1, 2**22 + 17, os.getpgrp(), stranger_pid]) | JSON


@pytest.fixture
def no_stray_signals(stranger, monkeypatch):
    """Refuse (and fail on) a signal to group 0 or 1, our own group or the stranger, instead of sending it."""
    refused: list[str] = []
    real_killpg, real_kill = os.killpg, os.kill

    def killpg(pgid: int, sig: int) -> None:
        if pgid <= 1 or pgid in (os.getpgrp(), stranger.pid):
            refused.append(f"killpg({pgid}, {sig})")
            raise PermissionError("refused by the test")
        real_killpg(pgid, sig)

    def kill(pid: int, sig: int) -> None:
        if sig and (pid <= 1 or pid == stranger.pid or -pid in (os.getpgrp(), stranger.pid)):
            refused.append(f"kill({pid}, {sig})")
            raise PermissionError("refused by the test")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "killpg", killpg)
    monkeypatch.setattr(os, "kill", kill)
    return refused


@FUZZ
@given(st.data())
def test_any_pid_file_is_read_or_stale_and_never_signals(tmp_path, stranger, no_stray_signals, data):
    from sparkserve.runtime import native

    base = {"pid": stranger.pid, "pgid": stranger.pid, "start_ticks": 0, "argv": ["sleep", "600"],
            "engine": "ollama", "url": "http://127.0.0.1:1", "model": "m", "started_at": 0.0, "log": "x",
            "marker": uuid.uuid4().hex, "group_start_ticks": 0}
    for key in data.draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        if data.draw(st.booleans()):
            base.pop(key, None)
        else:
            base[key] = data.draw(_pid_value(stranger.pid) if key in ("pid", "pgid") else JSON)
    stack = tmp_path / "sparkserve.toml"
    stack.write_text("")
    native.checked_state_dir(stack, create=True)
    pid_file = native.pid_file(stack, "s")
    pid_file.write_text(json.dumps(base) if data.draw(st.booleans()) else data.draw(st.text(max_size=40)))
    seen = native.observe(stack, "s")
    assert seen.state in (native.RUNNING, native.CRASHED, native.STALE, native.STOPPED)
    assert "\n" not in seen.detail
    native.stop(stack, "s", timeout=0.5)
    assert no_stray_signals == [] and stranger.poll() is None  # never the stranger: it carries no marker
    assert not pid_file.exists()


BENCH_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["0", "-1", "inf", "nan", "1e999", "0.5", "1,", ",",
                                                                  "1,,2", "abc", "", " ", "\x00", "-0"]))
BENCH_FLAGS = ("--concurrency", "--rate", "--duration", "--num-prompts", "--timeout", "--max-failure-rate",
               "--temperature", "--burstiness", "--warmup", "--prompt-len", "--sample-interval")


@FUZZ
@given(flag=st.sampled_from(BENCH_FLAGS), value=BENCH_VALUES)
def test_any_bench_value_is_refused_in_one_line_before_load(tmp_path, flag, value):
    """Against a port where nothing listens: every run ends with exit 2 and one line, nothing written."""
    from typer.testing import CliRunner

    from sparkserve.cli import app

    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", f"{flag}={value}", "--json", str(out),
                                      "--quiet"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, UserError), repr(result.exception)
        assert "\n" not in str(result.exception)
    else:
        assert result.exit_code == 2, result.output
    assert not out.exists()

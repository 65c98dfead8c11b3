"""One secret policy: names normalised once, secrets refused in stack args, redacted from all
that sparkserve records or prints (bench results, up's output, logs, pid files)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from bench_servers import run_bench, stand_in
from native_kit import run_cli
from sparkserve import secrets
from sparkserve.errors import UserError
from sparkserve.stack.load import parse_stack

KEY = "sk-harden-4242-never-printed"


@pytest.mark.parametrize("name", ["api-key", "--api-key", "api_key", "API_KEY", "hf_token", "HF-Token", "--hf-token",
                                  "VLLM_API_KEY", "GRAFANA_ADMIN_PASSWORD", "aws-secret-access-key", "apikey",
                                  "db_passwd", "ssl_keys"])
def test_secret_names_in_every_spelling(name):
    assert secrets.is_secret_name(name)


@pytest.mark.parametrize("name", ["max_num_batched_tokens", "tokenizer", "tokenizer_mode", "kv_cache_dtype",
                                  "OLLAMA_KEEP_ALIVE", "max_model_len", "enable_prompt_tokens_details", "monkey",
                                  "long_prefill_token_threshold", "--long-prefill-token-threshold"])
def test_ordinary_names_are_not_secrets(name):
    assert not secrets.is_secret_name(name)


STACK = """
[services.s]
engine = "{engine}"
model = "{model}"
port = 8000
args = {{ {key} = {value} }}
"""


@pytest.mark.parametrize("key", ["api_key", '"api-key"', '"--api-key"', "hf_token", '"HF-Token"', "secret_thing",
                                 "db_password", '"--hf-token"'])
@pytest.mark.parametrize(("engine", "model"), [("vllm", "Qwen/Qwen3-0.6B"), ("ollama", "qwen3:0.6b")])
def test_a_secret_in_args_is_refused_with_the_env_fix(key, engine, model):
    with pytest.raises(UserError) as caught:
        parse_stack(STACK.format(engine=engine, model=model, key=key, value=f'"{KEY}"'), "sparkserve.toml")
    message = str(caught.value)
    assert "\n" not in message and "holds a secret" in message and ".env" in message and KEY not in message


def test_a_boolean_switch_named_like_a_secret_is_allowed():
    spec = parse_stack(STACK.format(engine="vllm", model="Qwen/Qwen3-0.6B", key="return_tokens_as_token_ids",
                                    value="true"))
    assert spec.services["s"].args == {"return_tokens_as_token_ids": True}


def test_render_refuses_a_secret_arg_and_writes_nothing(tmp_path):
    (tmp_path / "sparkserve.toml").write_text("[stack]\nhardware = \"h100-sxm\"\n" + STACK.format(
        engine="vllm", model="Qwen/Qwen3-0.6B", key='"--api-key"', value=f'"{KEY}"'))
    result = run_cli(tmp_path, "render")
    assert result.returncode == 2 and KEY not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "holds a secret" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparkserve.toml"]


def test_redact_argv_and_text():
    argv = ["vllm", "serve", "m", "--api-key", KEY, f"--hf-token={KEY}", "--max-num-batched-tokens", "8192",
            "--return-tokens-as-token-ids", "--port", "8000"]
    assert secrets.redact_argv(argv) == ["vllm", "serve", "m", "--api-key", secrets.REDACTED,
                                         f"--hf-token={secrets.REDACTED}", "--max-num-batched-tokens", "8192",
                                         "--return-tokens-as-token-ids", "--port", "8000"]
    text = f"args: --api-key {KEY} and the value {KEY} again"
    assert KEY not in secrets.redact_text(text, [KEY])
    assert KEY not in secrets.redact_text(f"--api-key {KEY}", [])  # a flag's value even when unknown


def test_bench_result_never_holds_the_servers_api_key(tmp_path):
    """bench reads a local server's command line for the result; its --api-key value is redacted."""
    with stand_in("openai", "--api-key", KEY) as (url, _):
        proc, data = run_bench(["--url", url, "--api", "openai-completions", "-p", "8", "-o", "4", "-n", "2",
                                "--warmup", "0", "--api-key", KEY, "--html", str(tmp_path / "r.html")],
                               tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert data["environment"]["server_args"]["api_key"] == secrets.REDACTED
    for text in ((tmp_path / "r.json").read_text(), (tmp_path / "r.html").read_text(), proc.stdout, proc.stderr):
        assert KEY not in text


def test_env_file_readable_by_others_is_warned(tmp_path):
    env = tmp_path / ".env"
    env.write_text(f"HF_TOKEN={KEY}\n")
    env.chmod(0o644)
    warning = secrets.env_file_warning(env)
    assert warning and "chmod 600" in warning and KEY not in warning
    env.chmod(0o600)
    assert secrets.env_file_warning(env) is None


def test_known_values_read_env_and_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"HF_TOKEN={KEY}\nOTHER=visible-value\n")
    monkeypatch.setenv("VLLM_API_KEY", "env-key-123456")
    values = secrets.known_values(tmp_path / ".env")
    assert KEY in values and "env-key-123456" in values and "visible-value" not in values


def test_pid_file_is_private(tmp_path):
    from sparkserve.runtime import native

    stack = tmp_path / "sparkserve.toml"
    stack.write_text("")
    native.checked_state_dir(stack, create=True)
    record = native.Record(pid=2, pgid=2, start_ticks=0, argv=["x"], engine="vllm", url="u", model="m",
                           started_at=0.0, log="l", marker="0" * 32, group_start_ticks=0)
    record.write(native.pid_file(stack, "s"))
    assert stat.S_IMODE(os.stat(native.pid_file(stack, "s")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(native.state_dir(stack)).st_mode) == 0o700
    assert json.loads(native.pid_file(stack, "s").read_text())["marker"] == "0" * 32


def test_an_error_message_never_shows_a_secret_value(tmp_path):
    """A secret value that reaches an error (here: a bad bind address pasted from .env) is redacted."""
    (tmp_path / "sparkserve.toml").write_text(f'[stack]\nbind = "{KEY}"\n\n[services.s]\nengine = "ollama"\n'
                                              'model = "qwen3:0.6b"\nport = 11434\n')
    from native_kit import cli_env

    result = run_cli(tmp_path, "render", env=cli_env(HF_TOKEN=KEY))
    assert result.returncode == 2 and "stack.bind" in result.stderr
    assert KEY not in result.stderr and secrets.REDACTED in result.stderr

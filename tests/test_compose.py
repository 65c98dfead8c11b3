"""`sparkserve render`: every generated compose file passes two independent Compose-spec checks
(the `compose-spec` package and compose-go's JSON schema) and carries no secret."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sparkserve.engines import ollama, vllm
from sparkserve.hardware.catalog import get_profile
from sparkserve.runtime import yamltext
from sparkserve.runtime.compose import build_project, render
from sparkserve.stack.init import default_stack_text
from sparkserve.stack.load import load_stack
from sparkserve.stack.stackplan import plan_stack

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "data" / "schemas" / "compose-spec.schema.json"
SPARKSERVE = [sys.executable, "-m", "sparkserve.cli"]


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SPARKSERVE, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def validate(text: str) -> dict:
    """Parse with PyYAML-free compose-spec, then check compose-go's schema; return the document."""
    from compose_spec import PyCompose

    compose = PyCompose.from_yaml(text)
    compose.validate()
    import yaml
    doc = yaml.safe_load(text)
    if SCHEMA.is_file():
        import jsonschema

        jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    return doc


def render_text(tmp_path: Path, stack_text: str, name: str = "sparkserve.toml") -> tuple[str, dict]:
    path = tmp_path / name
    path.write_text(stack_text)
    stack = load_stack(path)
    hw = get_profile(stack.spec.stack.hardware)
    render(stack, hw, plan_stack(stack, hw), tmp_path)
    text = (tmp_path / "docker-compose.yml").read_text()
    return text, validate(text)


def test_schema_file_is_there():
    assert SCHEMA.is_file(), f"expected compose-go's schema at {SCHEMA}"


@pytest.mark.parametrize("hw", ["dgx-spark", "h100-sxm", "a100-80gb", "gh200"])
@pytest.mark.parametrize("variant", ["bf16", "fp8", "int4"])
def test_default_stack_renders_a_valid_project(tmp_path, hw, variant):
    _, doc = render_text(tmp_path, default_stack_text(get_profile(hw), variant))
    assert set(doc["services"]) == {"vllm-qwen3-32b", "ollama"}


def test_default_spark_project(tmp_path):
    text, doc = render_text(tmp_path, default_stack_text(get_profile("dgx-spark")))
    v, o = doc["services"]["vllm-qwen3-32b"], doc["services"]["ollama"]
    assert v["image"].startswith("nvcr.io/nvidia/vllm:") and v["image"].endswith("-py3")
    assert o["image"].startswith("ollama/ollama:")
    assert v["ports"] == ["127.0.0.1:8000:8000"] and o["ports"] == ["127.0.0.1:11434:11434"]
    gpu = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    for svc in (v, o):
        assert svc["deploy"]["resources"]["reservations"]["devices"] == [gpu]
        assert svc["restart"] == "unless-stopped" and "env_file" not in svc and "ipc" not in svc
        assert svc["ulimits"] == {"memlock": {"soft": -1, "hard": -1}, "stack": {"soft": 67108864, "hard": 67108864}}
        assert ":latest" not in svc["image"] and ":" in svc["image"].rsplit("/", 1)[-1]
    assert v["healthcheck"]["test"] == ["CMD", "curl", "-fsS", "http://localhost:8000/health"]
    assert o["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    assert v["volumes"] == ["/opt/hf:/root/.cache/huggingface", "vllm-compile-cache:/root/.cache/vllm"]
    assert o["volumes"] == ["/opt/ollama:/root/.ollama"]
    assert doc["volumes"] == {"vllm-compile-cache": {}}
    assert v["entrypoint"] == ["vllm", "serve"]
    cmd = v["command"]
    assert cmd[0] == "Qwen/Qwen3-32B"
    assert cmd[cmd.index("--quantization") + 1] == "fp8"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.85"
    assert cmd[cmd.index("--max-model-len") + 1] == "40960"
    assert cmd[cmd.index("--max-num-batched-tokens") + 1] == "8192"
    assert cmd[cmd.index("--max-num-seqs") + 1] == "8"
    assert "--enable-prefix-caching" in cmd and "--enable-chunked-prefill" in cmd
    assert not set(cmd) & vllm.REMOVED_FLAGS
    assert "--api-key" not in cmd and "api-key" not in text
    assert v["environment"] == {"HF_TOKEN": "${HF_TOKEN:-}", "VLLM_API_KEY": "${VLLM_API_KEY:-}"}
    assert v["shm_size"] == "8gb" and "shm_size" not in o
    assert o["environment"]["OLLAMA_KEEP_ALIVE"] == "30m"
    assert o["environment"]["OLLAMA_MAX_LOADED_MODELS"] == "1" and o["environment"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert not any("HF_TOKEN" in v or "VLLM_API_KEY" in v for v in o["environment"].values())
    assert "HF_TOKEN" not in o["environment"]
    assert (tmp_path / ".env.example").read_text().count("HF_TOKEN=\n") == 1
    assert "VLLM_API_KEY=\n" in (tmp_path / ".env.example").read_text()
    assert not (tmp_path / ".env").exists()


def test_x86_gets_the_vllm_project_image(tmp_path):
    _, doc = render_text(tmp_path, default_stack_text(get_profile("h100-sxm")))
    assert doc["services"]["vllm-qwen3-32b"]["image"] == vllm.IMAGE_X86_64
    assert vllm.image_for(get_profile("dgx-spark")) == vllm.IMAGE_AARCH64
    assert ollama.image_for(get_profile("dgx-spark")) == ollama.image_for(get_profile("h100-sxm"))


STACK = """
[stack]
hardware = "h100-sxm"
bind = "{bind}"
hf_cache = "/data/hf"

[services.chat]
engine = "vllm"
model = "Qwen/Qwen3-8B"
port = 9000
gpus = 2
image = "registry.local/vllm:pinned"
volumes = ["./models:/models:ro", "shared-data:/data"]
env = {{ HF_TOKEN = "${{HF_TOKEN}}", PROMPT_PREFIX = "cost $5" }}

[services.chat.args]
max_model_len = 8192
gpu_memory_utilization = 0.5
enable_prefix_caching = false
enforce_eager = true
served_model_name = ["chat", "qwen"]
tensor_parallel_size = 2

[services.local]
engine = "ollama"
model = "qwen3:4b"
port = 11500
args = {{ num_ctx = 4096 }}
env = {{ OLLAMA_KEEP_ALIVE = "-1" }}

[services.native-one]
engine = "vllm"
model = "Qwen/Qwen3-0.6B"
port = 8100
runtime = "native"
"""


def test_stack_settings_reach_the_compose_file(tmp_path):
    _, doc = render_text(tmp_path, STACK.format(bind="127.0.0.1"))
    chat, local = doc["services"]["chat"], doc["services"]["local"]
    assert "native-one" not in doc["services"]
    assert chat["image"] == "registry.local/vllm:pinned"
    assert chat["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    assert chat["ports"] == ["127.0.0.1:9000:8000"] and local["ports"] == ["127.0.0.1:11500:11434"]
    assert chat["volumes"] == ["/data/hf:/root/.cache/huggingface", "vllm-compile-cache:/root/.cache/vllm",
                               f"{(tmp_path / 'models').resolve()}:/models:ro", "shared-data:/data"]
    assert set(doc["volumes"]) == {"vllm-compile-cache", "shared-data", "ollama-models"}
    assert local["volumes"] == ["ollama-models:/root/.ollama"]
    cmd = chat["command"]
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.5"
    assert cmd[cmd.index("--max-model-len") + 1] == "8192"
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
    assert "--no-enable-prefix-caching" in cmd and "--enable-prefix-caching" not in cmd
    assert "--enforce-eager" in cmd
    assert cmd[cmd.index("--served-model-name") + 1: cmd.index("--served-model-name") + 3] == ["chat", "qwen"]
    # a literal $ is escaped for compose; ${VAR} stays a reference
    assert chat["environment"] == {"HF_TOKEN": "${HF_TOKEN:-}", "VLLM_API_KEY": "${VLLM_API_KEY:-}", "PROMPT_PREFIX": "cost $$5"}
    assert local["environment"]["OLLAMA_KEEP_ALIVE"] == "-1"
    assert local["environment"]["OLLAMA_CONTEXT_LENGTH"] == "4096"


@pytest.mark.parametrize(
    "bind,port",
    [("0.0.0.0", "0.0.0.0:9000:8000"), ("::1", "[::1]:9000:8000"), ("192.168.1.20", "192.168.1.20:9000:8000")],
)
def test_bind_opens_ports_only_when_asked(tmp_path, bind, port):
    _, doc = render_text(tmp_path, STACK.format(bind=bind))
    assert doc["services"]["chat"]["ports"] == [port]


def test_compose_spec_rejects_a_broken_file():
    """The validators are live: a malformed port and a bad GPU count fail."""
    from compose_spec import PyCompose

    with pytest.raises(ValueError):
        PyCompose.from_yaml('services:\n  a:\n    image: "x"\n    ports:\n      - "abc:def:ghi"\n')
    if SCHEMA.is_file():
        import jsonschema

        bad = {"services": {"a": {"image": "x", "ipc": "host", "restart": "unless-stopped", "deploy": 3}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, json.loads(SCHEMA.read_text()))


def test_render_never_writes_secrets(tmp_path):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    (tmp_path / ".env").write_text("HF_TOKEN=secret123\nVLLM_API_KEY=secret123\n")
    result = run_cli("render", cwd=tmp_path, env={"HF_TOKEN": "secret123", "VLLM_API_KEY": "secret123"})
    assert result.returncode == 0, result.stderr
    assert "secret123" not in result.stdout + result.stderr
    generated = [tmp_path / "docker-compose.yml", tmp_path / ".env.example", tmp_path / "sparkserve.toml"]
    for path in generated:
        assert "secret123" not in path.read_text(), path
    assert (tmp_path / ".env").read_text() == "HF_TOKEN=secret123\nVLLM_API_KEY=secret123\n"
    validate((tmp_path / "docker-compose.yml").read_text())


def test_write_env_creates_a_private_env_only_when_missing(tmp_path):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    out = tmp_path / "project"
    result = run_cli("render", "--out", str(out), "--write-env", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = out / ".env"
    assert env.read_text() == "HF_TOKEN=\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    env.write_text("HF_TOKEN=mine\n")
    again = run_cli("render", "--out", str(out), "--write-env", cwd=tmp_path)
    assert again.returncode == 0
    assert env.read_text() == "HF_TOKEN=mine\n"
    assert {p.name for p in out.iterdir()} == {"docker-compose.yml", ".env.example", ".env"}


def test_render_without_write_env_leaves_env_alone(tmp_path):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    result = run_cli("render", cwd=tmp_path)
    assert result.returncode == 0
    assert not (tmp_path / ".env").exists()
    assert "copy .env.example to .env" in result.stdout
    assert "vllm-qwen3-32b: http://localhost:8000" in result.stdout


def test_project_lists_env_references(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        STACK.format(bind="127.0.0.1").replace('PROMPT_PREFIX = "cost $5"', 'WANDB_API_KEY = "${WANDB_API_KEY}"')
    )
    stack = load_stack(path)
    hw = get_profile("h100-sxm")
    project = build_project(stack, hw, plan_stack(stack, hw))
    assert project.env_names == ["HF_TOKEN", "WANDB_API_KEY", "VLLM_API_KEY"]
    assert project.skipped == ["native-one"]


# --- engine helpers ------------------------------------------------------------------------------


def test_serve_args_overrides_and_flags():
    planned = ["m", "--gpu-memory-utilization", "0.85", "--max-num-seqs", "1024", "--enable-prefix-caching"]
    args = vllm.serve_args(
        planned, {"max_num_seqs": 16, "enable_prefix_caching": False, "kv_cache_dtype": "fp8", "swap_space": 4}
    )
    assert args == [
        "m",
        "--gpu-memory-utilization",
        "0.85",
        "--max-num-seqs",
        "16",
        "--no-enable-prefix-caching",
        "--kv-cache-dtype",
        "fp8",
    ]
    assert vllm.flag_for("max_model_len") == "--max-model-len"
    assert vllm.stack_arg_problem("swap_space")  # secrets (api_key) are sparkserve.secrets' to refuse
    assert vllm.stack_arg_problem("max_model_len") is None


# --- YAML writer ---------------------------------------------------------------------------------


def test_yaml_writer_round_trips_tricky_values():
    import yaml

    doc = {
        "services": {
            "a": {
                "ports": ["22:22", "127.0.0.1:8000:8000"],
                "x": ["yes", "no", "on", "null", "", "1e3", "0.85", 'quote"s', "é ü", "#not-comment", "- dash", "a: b"],
                "n": 5,
                "f": 0.5,
                "b": True,
                "none": None,
                "empty": {},
                "list": [],
                "nested": [{"k": "v", "l": ["x"]}, ["p", "q"]],
            }
        },
        "on": {"yes": 1},
    }
    text = yamltext.dump(doc, header="line one\n\nline three")
    assert text.startswith("# line one\n#\n# line three\n")
    assert yaml.safe_load(text) == doc
    assert yamltext.dump(doc) == yamltext.dump(doc)

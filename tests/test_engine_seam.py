"""The engine seam: a test engine defined and registered here (tests/toy_engine.py) gets plan,
render, native up/status/down, bench and doctor through the `Engine` interface alone.

Nothing in sparkserve names "toy": the CLI loads it through $SPARKSERVE_ENGINE_MODULES, its server
(tests/toy_server.py) is a real process speaking the OpenAI API on 127.0.0.1, started and stopped
by the native runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from native_kit import cli_env, free_port, group_alive, read_pid_file, run_cli

TESTS = Path(__file__).resolve().parent
MODEL = "Qwen/Qwen3-8B"
STACK = """
[stack]
hardware = "h100-sxm"

[services.toy]
engine = "toy"
model = "{model}"
quant = "bf16"
port = {port}
runtime = "{runtime}"
args = {{ max_model_len = 2048, served_model_name = "toy-model" }}
"""


def toy_env(tmp: Path) -> dict[str, str]:
    """The CLI's environment: the toy engine importable and registered, its executable named."""
    exe = tmp / "bin" / "toy-serve"
    exe.parent.mkdir(exist_ok=True)
    # A Python script, as engines' console scripts are: /proc then shows `python toy-serve ARGS`.
    server = str(TESTS / "toy_server.py")
    exe.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({server!r}, run_name='__main__')\n")
    exe.chmod(0o755)
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return cli_env(SPARKSERVE_ENGINE_MODULES="toy_engine", PYTHONPATH=path, SPARKSERVE_TOY=str(exe))


def write_stack(directory: Path, port: int, runtime: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sparkserve.toml").write_text(STACK.format(model=MODEL, port=port, runtime=runtime))
    return directory


def test_the_toy_is_registered_only_by_the_tests():
    import sparkserve.engines.registry as registry

    assert not any("toy" in m for m in registry.BUILTIN_MODULES)
    source = Path(registry.__file__).parents[1]
    assert not [p for p in source.rglob("*.py") if "toy" in p.read_text(encoding="utf-8").lower()]


def test_plan_uses_the_toy_memory_model_and_arguments(tmp_path):
    result = run_cli(tmp_path, "plan", "-m", MODEL, "-q", "bf16", "-e", "toy", "-H", "h100-sxm",
                     "--max-model-len", "2048", "--json", env=toy_env(tmp_path))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    plan = plan["services"][0] if "services" in plan else plan
    assert plan["engine"] == "toy"
    assert plan["recommended_args"] == ["--model", MODEL, "--max-model-len", "2048", "--slots", "4"]
    mem = plan["memory"]
    # The toy's accounting: weights + KV for 4 requests of 2048 tokens + 1 GiB, nothing of vLLM's budget.
    assert mem["kv_tokens"] == 4 * 2048 and mem["cuda_graph_gib"] == 0
    assert mem["total_gib"] == pytest.approx(mem["weights_gib"] + mem["kv_cache_gib"] + 1.0, abs=0.02)
    assert not [w for w in mem["warnings"] if "gpu-memory-utilization" in w]


def test_an_unknown_engine_is_one_line_with_the_closest_name(tmp_path):
    result = run_cli(tmp_path, "plan", "-m", MODEL, "-e", "toyy", env=toy_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown engine 'toyy'; closest: toy") and result.stderr.count("\n") == 1


def test_render_writes_the_toy_compose_fragment(tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", port, "compose")
    result = run_cli(directory, "render", env=toy_env(tmp_path))
    assert result.returncode == 0, result.stderr
    svc = yaml.safe_load((directory / "docker-compose.yml").read_text())["services"]["toy"]
    assert svc["image"] == "example.invalid/toy-server:1"
    assert svc["command"] == ["--model", MODEL, "--max-model-len", "2048", "--slots", "4", "--port", "7000"]
    assert svc["ports"] == [f"127.0.0.1:{port}:7000"]
    assert svc["healthcheck"]["test"] == ["CMD", "toy-serve", "--check"]
    assert svc["healthcheck"]["start_period"] == "30s"
    assert "entrypoint" not in svc
    assert "VLLM_API_KEY" not in (directory / ".env.example").read_text()


def test_native_up_status_bench_doctor_down(tmp_path):
    port = free_port()
    directory = write_stack(tmp_path / "s", port, "native")
    env = toy_env(tmp_path)
    up = run_cli(directory, "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"ready toy: http://127.0.0.1:{port} (toy-model" in up.stdout
        assert f"toy: http://127.0.0.1:{port}/v1" in up.stdout  # the OpenAI API's suffix
        assert "checking the arguments" not in up.stdout  # the toy has no argument check
        record = read_pid_file(directory, "toy")
        assert record["argv"][1:] == ["--model", MODEL, "--max-model-len", "2048", "--slots", "4",
                                      "--served-name", "toy-model", "--host", "127.0.0.1", "--port", str(port)]
        assert "toy: serving" in (directory / ".sparkserve" / "toy.log").read_text()

        status = run_cli(directory, "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)
        rows = rows.get("services", rows) if isinstance(rows, dict) else rows
        (row,) = [r for r in rows if r.get("service", r.get("name")) == "toy"]
        assert json.dumps(row).count("running") >= 1 and "healthy" in json.dumps(row)

        out = tmp_path / "bench.json"
        bench = subprocess.run([sys.executable, "-m", "sparkserve.cli", "bench", "--service", "toy", "-n", "4",
                                "-p", "16", "-o", "8", "--warmup", "0", "--quiet", "--json", str(out)],
                               cwd=directory, env=env, capture_output=True, text=True, timeout=300)
        assert bench.returncode == 0, bench.stderr
        data = json.loads(out.read_text())
        assert data["environment"]["engine"] == "toy"
        server = data["runs"][0]["server"]
        assert server["source"] == "toy-metrics"  # read with the toy's own metric names
        assert server["generation_tokens"] == 4 * 8
        # KV-cache usage is the mean over data-parallel ranks (readings/metrics.py): rank 1 reports 0.5,
        # rank 0 almost nothing, so the mean is just above 0.25 (the max or the sum would be >= 0.5).
        assert 0.25 <= server["kv_cache_usage_peak"] < 0.3

        doctor = run_cli(directory, "doctor", "--json", env=env)
        assert doctor.returncode in (0, 1), doctor.stderr
        checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert "toy already running there" in checks["ports"]["summary"]  # found through the toy's health path
    finally:
        down = run_cli(directory, "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped toy" in down.stdout
    assert not group_alive(record["pgid"])
    assert read_pid_file(directory, "toy") is None

"""`sparkserve doctor`: log diagnosis through the CLI on the public-issue corpus, plan numbers in the
KV-cache fix, and the environment checks against a `docker` stand-in on PATH (Docker missing,
daemon down, compose plugin missing, NVIDIA runtime missing, wrong image architecture)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake_nvml import FakeNVML
from sparkserve.cli import app
from sparkserve.doctor.checks import Context, check_driver, check_memory, check_page_cache
from sparkserve.hardware.catalog import get_profile
from sparkserve.hardware.detect import detect

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / "tests" / "data" / "logs"
with (LOG_DIR / "MANIFEST.csv").open(newline="") as _fh:
    LOGS = [LOG_DIR / r["file"] for r in csv.DictReader(_fh) if r["split"] == "work"]  # never the held-back set
FAKE_DOCKER = REPO / "tests" / "data" / "fake_docker_doctor" / "docker"
GIB = 1024**3

STACK = """
[stack]
hardware = "{hardware}"

[services.chat]
engine = "vllm"
model = "Qwen/Qwen3-32B"
quant = "fp8"
port = {port}
runtime = "{runtime}"

[services.chat.args]
gpu_memory_utilization = 0.7
max_model_len = 32768
"""
# vLLM's V0 wording (vllm/worker/worker.py raise_if_cache_size_invalid): no GiB figures, so the
# utilisation that fits can only come from sparkserve's plan.
KV_LOG = (
    "INFO 11-02 09:12:40 worker.py:232] Memory profiling takes 6.21 seconds\n"
    "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored "
    "in KV cache (9312). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
    "the engine.\n"
)


def cli(*args: str, cwd: Path, path: str | None = None, mode: str = "ok") -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "FAKE_DOCKER_MODE": mode}
    env.pop("HF_TOKEN", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "sparkserve.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def docker_bin(tmp_path) -> str:
    """A PATH whose only `docker` is the stand-in (no other program is needed on it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + FAKE_DOCKER.read_text().split("\n", 1)[1])
    docker.chmod(0o755)
    return str(bin_dir)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_stack(directory: Path, hardware: str = "h100-sxm", runtime: str = "compose") -> Path:
    path = directory / "sparkserve.toml"
    path.write_text(STACK.format(hardware=hardware, port=_free_port(), runtime=runtime))
    return path


# --- log diagnosis --------------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_doctor_log_json_names_the_cause_first(log, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stack file: the log alone decides
    result = runner.invoke(app, ["doctor", "--log", str(log), "--json"])
    data = json.loads(result.output)
    assert set(data) == {"findings"}
    cause = log.name.split("__", 1)[0]
    assert result.exit_code == (0 if cause == "healthy" else 1), result.output  # a recognised failure exits 1
    if cause == "healthy":
        assert data["findings"] == []
        return
    first = data["findings"][0]
    assert first["cause_id"] == cause
    assert set(first) == {"cause_id", "summary", "fix", "evidence"}
    assert first["summary"] and first["fix"] and first["evidence"]
    assert all(isinstance(line, str) and line for line in first["evidence"])


def test_doctor_log_text_output(tmp_path):
    log = REPO / "tests" / "data" / "logs" / "port_in_use__1.log"
    result = cli("doctor", "--log", str(log), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "port_in_use" in result.stdout and "fix:" in result.stdout
    assert "environment" not in result.stdout  # --log diagnoses the file only


def test_doctor_log_missing_file_is_a_clear_error(tmp_path):
    result = cli("doctor", "--log", str(tmp_path / "nope.log"), cwd=tmp_path)
    assert result.returncode == 2 and "no such log file" in result.stderr


def test_doctor_log_unrecognised_text_gives_an_empty_list(tmp_path):
    log = tmp_path / "calm.log"
    log.write_text("INFO 11-02 09:12:40 api_server.py:1] Application startup complete.\n")
    result = cli("doctor", "--log", str(log), "--json", cwd=tmp_path)
    assert json.loads(result.stdout) == {"findings": []}
    assert result.returncode == 0


def test_kv_fix_uses_the_plan_when_the_stack_is_known(tmp_path, docker_bin):
    write_stack(tmp_path, hardware="dgx-spark", runtime="native")
    log = tmp_path / "kv.log"
    log.write_text(KV_LOG)
    bare = json.loads(cli("doctor", "--log", str(log), "--json", cwd=tmp_path / "..").stdout)["findings"][0]
    assert bare["cause_id"] == "kv_cache_too_small_for_max_model_len"
    assert bare["fix"].endswith("or raise --gpu-memory-utilization.")  # no numbers to size it without a plan

    planned = json.loads(cli("doctor", "--log", str(log), "--json", cwd=tmp_path).stdout)["findings"][0]
    fix = planned["fix"]
    assert "KV cache holds 9,312 tokens, max-model-len is 32,768: lower --max-model-len to 8192" in fix
    m = re.search(r"raise --gpu-memory-utilization to (0\.\d\d) \(now 0\.70; ([\d.]+) GiB more of 121\.6 GiB\)", fix)
    assert m, fix
    assert 0.70 < float(m.group(1)) <= 0.99
    assert "DGX Spark" in fix  # unified memory: prefer a shorter context

    # The same through `doctor SERVICE`: a native service's log file under .sparkserve/.
    state = tmp_path / ".sparkserve"
    state.mkdir()
    (state / "chat.log").write_text(KV_LOG)
    result = cli("doctor", "chat", "--json", cwd=tmp_path, path=docker_bin)
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["findings"][0]["cause_id"] == "kv_cache_too_small_for_max_model_len"
    assert data["findings"][0]["fix"] == fix
    assert data["findings"][0]["service"] == "chat"
    assert data["logs"] == [{"service": "chat", "source": str((state / "chat.log").resolve())}]


def test_doctor_reads_compose_logs_of_a_service(tmp_path, docker_bin):
    write_stack(tmp_path)
    assert cli("render", cwd=tmp_path).returncode == 0
    result = cli("doctor", "chat", "--json", cwd=tmp_path, path=docker_bin, mode="crash")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert [f["cause_id"] for f in data["findings"]] == ["cuda_oom_runtime"]
    assert any("CUDA out of memory" in line for line in data["findings"][0]["evidence"])
    assert data["logs"][0]["source"].startswith("docker compose logs --tail=500 chat")


def test_doctor_does_not_diagnose_dockers_own_errors(tmp_path, docker_bin):
    write_stack(tmp_path)
    assert cli("render", cwd=tmp_path).returncode == 0
    data = json.loads(cli("doctor", "--json", cwd=tmp_path, path=docker_bin, mode="no-compose").stdout)
    assert data["findings"] == []  # "unknown flag: --file" is docker's complaint, not the engine's
    assert "cannot read its logs" in data["logs"][0]["source"]


def test_doctor_unknown_service(tmp_path):
    write_stack(tmp_path)
    result = cli("doctor", "nope", cwd=tmp_path)
    assert result.returncode == 2 and "no service 'nope'" in result.stderr


# --- environment checks ---------------------------------------------------------------------------

def checks_of(result: subprocess.CompletedProcess) -> dict[str, dict]:
    data = json.loads(result.stdout)
    failed = any(c["status"] == "fail" for c in data["checks"]) or bool(data["findings"])
    assert result.returncode == (1 if failed else 0), result.stderr  # scripts can tell a failed check
    return {c["id"]: c for c in data["checks"]}


def test_checks_with_docker_and_the_nvidia_runtime(tmp_path, docker_bin):
    write_stack(tmp_path)
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin))
    assert checks["docker"]["status"] == "pass" and "27.3.1" in checks["docker"]["summary"]
    assert checks["compose_plugin"]["status"] == "pass" and "v2.29.7" in checks["compose_plugin"]["summary"]
    assert checks["nvidia_container_runtime"]["status"] == "pass"
    assert checks["image_architecture"]["status"] == "pass"
    assert checks["ports"]["status"] == "pass"
    assert checks["hf_token"]["status"] == "n/a"  # Qwen is not gated
    assert checks["disk_space"]["status"] in ("pass", "fail")
    # No GPU on this machine: the driver check fails with its fix instead of crashing.
    assert checks["nvidia_driver"]["status"] == "fail" and "driver" in checks["nvidia_driver"]["fix"]
    for c in checks.values():
        assert c["status"] in ("pass", "fail", "n/a")
        assert c["status"] != "fail" or c["fix"]


def test_docker_missing(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    write_stack(tmp_path)
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=str(empty)))
    assert checks["docker"]["status"] == "fail" and "docs.docker.com" in checks["docker"]["fix"]
    assert checks["compose_plugin"]["status"] == "n/a"
    assert checks["nvidia_container_runtime"]["status"] == "n/a"


def test_docker_missing_is_fine_for_a_native_stack(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    write_stack(tmp_path, runtime="native")
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=str(empty)))
    assert checks["docker"]["status"] == "n/a" and "natively" in checks["docker"]["summary"]
    assert checks["image_architecture"]["status"] == "n/a"


def test_daemon_down(tmp_path, docker_bin):
    write_stack(tmp_path)
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin, mode="no-daemon"))
    assert checks["docker"]["status"] == "fail" and "systemctl start docker" in checks["docker"]["fix"]
    assert checks["nvidia_container_runtime"]["status"] == "n/a"


def test_compose_plugin_missing(tmp_path, docker_bin):
    write_stack(tmp_path)
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin, mode="no-compose"))
    assert checks["docker"]["status"] == "pass"
    assert checks["compose_plugin"]["status"] == "fail"
    assert "docker-compose-plugin" in checks["compose_plugin"]["fix"]


def test_nvidia_runtime_missing(tmp_path, docker_bin):
    write_stack(tmp_path)
    checks = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin, mode="no-nvidia"))
    runtime = checks["nvidia_container_runtime"]
    assert runtime["status"] == "fail" and "nvidia-ctk runtime configure" in runtime["fix"]
    assert "runc" in runtime["summary"]


def test_image_architecture_against_the_host(tmp_path, docker_bin):
    import platform

    host = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine().lower(), platform.machine().lower())
    other_profile = "h100-sxm" if host == "aarch64" else "dgx-spark"
    this_profile = "dgx-spark" if host == "aarch64" else "h100-sxm"
    write_stack(tmp_path, hardware=other_profile)
    wrong_profile = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin))["image_architecture"]
    assert wrong_profile["status"] == "fail" and "exec format error" in wrong_profile["fix"]

    write_stack(tmp_path, hardware=this_profile)
    mode = "ok" if host == "aarch64" else "arch"  # the stand-in's images are arm64 in "arch" mode
    pulled = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin, mode=mode))["image_architecture"]
    if host == "x86_64":
        assert pulled["status"] == "fail" and "linux/arm64" in pulled["summary"]
        assert "docker pull --platform linux/amd64" in pulled["fix"]


def test_gated_model_needs_hf_token(tmp_path, docker_bin):
    (tmp_path / "sparkserve.toml").write_text(
        STACK.format(hardware="h100-sxm", port=_free_port(), runtime="compose").replace("Qwen/Qwen3-32B", "meta-llama/Llama-3.1-8B-Instruct").replace('quant = "fp8"\n', ""))
    token = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin))["hf_token"]
    assert token["status"] == "fail" and "huggingface.co/meta-llama/Llama-3.1-8B-Instruct" in token["fix"]
    (tmp_path / ".env").write_text("HF_TOKEN=hf_test\n")
    assert checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin))["hf_token"]["status"] == "pass"


def test_port_held_by_another_program(tmp_path, docker_bin):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        (tmp_path / "sparkserve.toml").write_text(STACK.format(hardware="h100-sxm", port=port, runtime="compose"))
        ports = checks_of(cli("doctor", "--json", cwd=tmp_path, path=docker_bin))["ports"]
    assert ports["status"] == "fail" and f"chat: {port}" in ports["summary"] and "ss -ltnp" in ports["fix"]


def test_doctor_without_a_stack_file_runs_what_it_can(tmp_path, docker_bin):
    result = cli("doctor", cwd=tmp_path, path=docker_bin)
    assert result.returncode == (1 if "FAIL" in result.stdout else 0), result.stderr
    assert "n/a  disk_space: no stack file" in result.stdout
    assert "pass docker" in result.stdout


# --- memory checks on unified memory (numbers from a meminfo this test writes) --------------------


def _spark_context(tmp_path, available_gib: float, free_gib: float, cached_gib: float) -> Context:
    from sparkserve.stack.load import load_stack
    from sparkserve.stack.stackplan import plan_stack

    path = write_stack(tmp_path, hardware="dgx-spark", runtime="native")
    stack = load_stack(path)
    hw = get_profile("dgx-spark")
    meminfo = {
        "MemTotal": int(127.5 * GIB),
        "MemAvailable": int(available_gib * GIB),
        "MemFree": int(free_gib * GIB),
        "Cached": int(cached_gib * GIB),
        "Buffers": 0,
        "Shmem": 0,
    }
    return Context(
        detection=detect(nvml=FakeNVML(init_error="NVML Shared Library Not Found")),
        meminfo=meminfo,
        stack=stack,
        hw=hw,
        plan=plan_stack(stack, hw),
    )


def test_memory_checks_against_the_plan(tmp_path):
    ok = _spark_context(tmp_path, available_gib=120, free_gib=110, cached_gib=8)
    assert check_memory(ok).status == "pass" and check_page_cache(ok).status == "pass"
    need = 0.7 * 121.6
    cache_bound = _spark_context(tmp_path, available_gib=need + 10, free_gib=need - 20, cached_gib=30)
    assert check_memory(cache_bound).status == "pass"
    page = check_page_cache(cache_bound)
    assert page.status == "fail" and "drop_caches" in page.fix
    short = _spark_context(tmp_path, available_gib=40, free_gib=30, cached_gib=5)
    mem = check_memory(short)
    assert mem.status == "fail" and "MemAvailable 40.0 GiB" in mem.summary
    assert check_page_cache(short).status == "pass"  # dropping 5 GiB would not be enough


OLD_DRIVER = {"driver": "550.54.15", "cuda": 12040}


def test_driver_check_on_gb10_partial_nvml():
    check = check_driver(Context(detection=detect(nvml=FakeNVML()), meminfo={}))
    assert check.status == "pass" and "580.95.05" in check.summary and "13.0" in check.summary


def test_driver_too_old_for_the_default_vllm_image(tmp_path):
    from sparkserve.stack.load import load_stack

    stack = load_stack(write_stack(tmp_path))  # compose vLLM with the default (CUDA 13) image
    check = check_driver(Context(detection=detect(nvml=FakeNVML(**OLD_DRIVER)), meminfo={}, stack=stack))
    assert check.status == "fail" and "CUDA 13.0" in check.summary and "580" in check.fix
    native = load_stack(write_stack(tmp_path, runtime="native"))
    assert (
        check_driver(Context(detection=detect(nvml=FakeNVML(**OLD_DRIVER)), meminfo={}, stack=native)).status == "pass"
    )

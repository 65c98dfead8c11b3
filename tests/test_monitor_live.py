"""`status`, `monitor --once` and the live `monitor` app against the real CPU vLLM: before, during and
after a load of long completions, and with a service that is down (a port nothing listens on)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from sparkserve.monitor.app import MonitorApp
from sparkserve.monitor.sampler import Sampler
from sparkserve.monitor.targets import Target
from test_monitor_readings import OllamaStandIn, ollama_models

CONCURRENT = 4
MAX_TOKENS = 512
MAX_DURING_READS = 40  # a hang guard only: reads go on until one sees the load; on a starved host many come back n/a or idle
CLI_TIMEOUT_S = 600  # a hang guard only: a starved host can take minutes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_stack(directory: Path, model_dir: Path, port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sparkserve.toml"
    path.write_text(f"""
[stack]
hardware = "h100-sxm"

[services.tiny]
engine = "vllm"
model = "{model_dir}"
port = {port}
runtime = "native"

[services.tiny.args]
served_model_name = "tiny"
max_model_len = 2048
""")
    return path


@pytest.fixture
def live_stack(tmp_path, vllm_server) -> Path:
    write_stack(tmp_path / "live", vllm_server.model_dir, int(vllm_server.base_url.rsplit(":", 1)[1]))
    return tmp_path / "live"


@pytest.fixture
def stopped_stack(tmp_path, tiny_model) -> Path:
    write_stack(tmp_path / "stopped", tiny_model, _free_port())
    return tmp_path / "stopped"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "220"}
    result = subprocess.run([sys.executable, "-m", "sparkserve.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result


def status(cwd: Path) -> dict:
    data = json.loads(cli(cwd, "status", "--json", "--interval", "0.5").stdout)
    (service,) = data["services"]
    return service | {"_all": data}


class Load:
    """Waves of CONCURRENT long completions (max_tokens=512, ignore_eos) until stopped."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.completed = 0
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(CONCURRENT)]

    def _worker(self) -> None:
        with httpx.Client(timeout=600) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(self.base_url + "/v1/completions", json={
                        "model": "tiny", "prompt": "Tell me a long story about a lighthouse.",
                        "max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0.8})
                except httpx.RemoteProtocolError:  # a kept-alive connection the server closed: send again
                    continue
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
                    return
                if r.json()["usage"]["completion_tokens"] != MAX_TOKENS:
                    self.errors.append(f"short completion: {r.json()['usage']}")
                self.completed += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=600)


def test_status_before_during_and_after_a_load(live_stack, vllm_server):
    before = status(live_stack)
    assert before["api_status"] == "healthy" and before["model"] == "tiny"
    assert before["state"] == "stopped"  # running, but not started by sparkserve: no pid file
    assert before["pid"] == vllm_server.pid  # found as the process listening on the port
    assert before["requests_running"] == 0 and before["requests_waiting"] == 0
    assert before["kv_cache_usage"] == 0 and before["generation_tokens_per_s"] == 0
    assert before["uptime_s"] > 0 and before["rss_bytes"] > 100 * 1024**2
    assert before["kv_cache_tokens"] > 0 and before["interval_s"] > 0
    everything = before["_all"]
    assert everything["gpu"]["devices"] == [] and everything["gpu"]["nvml"] is False
    assert everything["memory"]["available_bytes"] > 0 and everything["memory"]["page_cache_bytes"] is not None
    assert everything["memory"]["services"]["tiny"]["rss_bytes"] == before["rss_bytes"]

    def busy(s: dict) -> bool:
        return (s["requests_running"] or 0) + (s["requests_waiting"] or 0) > 0 and (s["generation_tokens_per_s"] or 0) > 0

    def generating(frame: str) -> bool:
        m = re.search(r"tiny gen tok/s\s*│[^│]*│\s*([\d.]+)\s*│", frame)
        return bool(m) and float(m.group(1)) > 0

    with Load(vllm_server.base_url) as load:
        during = []
        while len(during) < MAX_DURING_READS and not any(busy(s) for s in during):
            during.append(status(live_stack))
        frames = []
        while len(frames) < MAX_DURING_READS and not any(generating(f) for f in frames):
            frames.append(cli(live_stack, "monitor", "--once", "--interval", "0.5").stdout)
    assert load.errors == [] and load.completed >= CONCURRENT
    assert any(busy(s) for s in during), during
    for s in during:  # a read the starved server did not answer in time is n/a, never an error
        assert s["api_status"] in ("healthy", "unhealthy")
        assert s["kv_cache_usage"] is None or 0 <= s["kv_cache_usage"] <= 1
    assert any((s["kv_cache_usage"] or 0) > 0 for s in during)
    assert any(generating(f) for f in frames), frames[-1]
    assert all("tiny" in f and "history" in f for f in frames)

    after = status(live_stack)
    assert after["api_status"] == "healthy"
    assert after["requests_running"] == 0 and after["requests_waiting"] == 0
    assert after["generation_tokens_per_s"] == 0 and after["preemptions_total"] is not None
    text = cli(live_stack, "status", "--interval", "0.2").stdout
    assert "tiny" in text and "healthy" in text and f"pid {vllm_server.pid} on its port" in text
    assert "GPU: n/a" in text and "host memory" in text


def test_status_and_monitor_once_with_the_service_down(stopped_stack):
    down = status(stopped_stack)
    assert down["api_status"] == "down" and down["error"] == "not listening"
    assert down["requests_running"] is None and down["generation_tokens_per_s"] is None
    assert down["pid"] is None and down["rss_bytes"] is None and down["uptime_s"] is None
    assert down["model"] == "tiny"  # what the stack serves it as
    text = cli(stopped_stack, "status", "--interval", "0.1").stdout
    assert "down" in text and "not listening" in text
    frame = cli(stopped_stack, "monitor", "--once", "--interval", "0.1").stdout
    assert "down" in frame and "memory in use" in frame


async def _wait(pilot, app: MonitorApp, condition, polls: int = 400) -> None:
    """Let the app run until `condition()` holds; the bound only stops a hung test."""
    for _ in range(polls):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"condition not met; last snapshot: {app.last}")


def test_live_monitor_follows_services_going_down_and_up_and_quits(vllm_server):
    ollama_port = _free_port()
    targets = [
        Target(name="tiny", engine="vllm", runtime="native", url=vllm_server.base_url, pid=vllm_server.pid),
        Target(name="local", engine="ollama", runtime="native", url=f"http://127.0.0.1:{ollama_port}"),
    ]

    def health(app: MonitorApp) -> dict[str, str]:
        return {r.name: r.health for r in app.last.services} if app.last else {}

    async def scenario() -> MonitorApp:
        with Sampler(lambda: targets) as sampler:
            app = MonitorApp(sampler, interval_s=0.2)
            async with app.run_test(size=(180, 60)) as pilot:
                await _wait(pilot, app, lambda: app.polls >= 3)
                assert health(app) == {"tiny": "healthy", "local": "down"}
                with OllamaStandIn(ollama_models(), port=ollama_port):  # the service comes up
                    await _wait(pilot, app, lambda: health(app).get("local") == "healthy")
                    assert app.last.services[1].ollama.models[0].name == "qwen3:8b"
                await _wait(pilot, app, lambda: health(app).get("local") == "down")  # and goes away again
                assert len(app.sampler.history["tiny"]["generation_tps"]) >= 3
                await pilot.press("q")
            return app

    app = asyncio.run(scenario())
    assert app.return_code == 0
    assert not app._thread.is_alive()


def test_live_monitor_quits_on_ctrl_c(stopped_stack):
    targets = [Target(name="gone", engine="vllm", runtime="native", url=f"http://127.0.0.1:{_free_port()}")]

    async def scenario() -> MonitorApp:
        with Sampler(lambda: targets) as sampler:
            app = MonitorApp(sampler, interval_s=0.1)
            async with app.run_test() as pilot:
                await _wait(pilot, app, lambda: app.polls >= 2)
                await pilot.press("ctrl+c")
            return app

    app = asyncio.run(scenario())
    assert app.return_code == 0 and not app._thread.is_alive()

"""A real Prometheus (Debian's `prometheus` package) scrapes the real CPU vLLM and `sparkserve exporter`
with the config `render --monitoring` wrote, and every query of the rendered Grafana dashboard returns
series. A dashboard query that matches nothing fails here.

Stand-ins only where the real part cannot exist on this machine: Ollama (tests/data/fake_ollama) and
the GPU (nvidia-smi replaying an H200's recorded answers, with the vLLM server as its compute process).
Run under `flock /tmp/sparkserve-e2e.lock` (it uses the shared vLLM server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import fake_nvidia_smi
from conftest import _free_port

REPO = Path(__file__).resolve().parents[1]
FAKE_OLLAMA = REPO / "tests" / "data" / "fake_ollama" / "ollama"
DEADLINE_S = 120.0
# Grafana fills $__rate_interval with max(4 x scrape interval, ...); the rendered scrape interval is 5s.
RATE_INTERVAL = "1m"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/dev-env.sh installs Debian's prometheus package "
                    "(apt-get install prometheus) when run as root", pytrace=False)
    return path


class Procs:
    """Processes this test starts, each in its own session, stopped (and waited for) at the end."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(what: str, check, procs: Procs, name: str):
    t0 = time.monotonic()
    while True:
        try:
            value = check()
            if value:
                return value
        except httpx.TransportError:
            pass
        if time.monotonic() - t0 > DEADLINE_S:
            pytest.fail(f"{what} not seen within {DEADLINE_S:.0f} s; {name} log:\n{procs.log(name)}", pytrace=False)
        time.sleep(0.5)


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10, trust_env=False)
    body = r.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


def test_prometheus_scrapes_the_stack_and_every_dashboard_query_returns_series(tmp_path, vllm_server):
    promtool, prometheus = tool("promtool"), tool("prometheus")
    vllm_port = int(vllm_server.base_url.rsplit(":", 1)[1])
    ollama_port, exporter_port, prom_port = _free_port(), _free_port(), _free_port()
    (tmp_path / "sparkserve.toml").write_text(f"""
[stack]
hardware = "h200"

[monitoring]
prometheus_port = {prom_port}
exporter_port = {exporter_port}

[services.tiny]
engine = "vllm"
model = "{vllm_server.model_dir}"
port = {vllm_port}
runtime = "native"

[services.local]
engine = "ollama"
model = "qwen3:0.6b"
port = {ollama_port}
runtime = "native"
""")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "VLLM_API_KEY")}
    render = subprocess.run([sys.executable, "-m", "sparkserve", "render", "--monitoring"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert render.returncode == 0, render.stderr
    config = tmp_path / "monitoring" / "prometheus.yml"
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    dashboard = json.loads((tmp_path / "monitoring/grafana/dashboards/sparkserve.json").read_text())

    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Procs(logs)
    try:
        ollama_url = f"http://127.0.0.1:{ollama_port}"
        procs.start("ollama", [sys.executable, str(FAKE_OLLAMA), "serve"], cwd=tmp_path, env=env | {
            "OLLAMA_HOST": f"127.0.0.1:{ollama_port}", "OLLAMA_MODELS": str(tmp_path / "ollama-models"),
            "FAKE_OLLAMA_LOG": str(logs / "ollama-requests.jsonl")})
        wait_for("fake Ollama", lambda: httpx.get(f"{ollama_url}/api/version", timeout=2).status_code == 200,
                 procs, "ollama")
        httpx.post(f"{ollama_url}/api/pull", json={"model": "qwen3:0.6b"}, timeout=30).raise_for_status()
        load = {"model": "qwen3:0.6b", "prompt": ""}
        httpx.post(f"{ollama_url}/api/generate", json=load, timeout=30).raise_for_status()

        bin_dir = tmp_path / "gpu-bin"
        smi_log = fake_nvidia_smi.install(bin_dir, "h200", processes=[(vllm_server.pid, 1234)])
        procs.start("exporter", [sys.executable, "-m", "sparkserve", "exporter", "--stack", "sparkserve.toml",
                                 "--port", str(exporter_port)], cwd=tmp_path,
                    env=env | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"})
        procs.start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"], cwd=tmp_path)
        prom = f"http://127.0.0.1:{prom_port}"

        def targets_up() -> bool:
            active = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return len(active) == 2 and all(t["health"] == "up" for t in active)

        wait_for("both targets (vLLM, exporter) up in Prometheus", targets_up, procs, "prometheus")
        # Traffic while Prometheus scrapes, so counters rise and histograms fill between samples.
        def scrapes_of_vllm() -> int:
            found = query(prom, 'count_over_time(up{job="vllm"}[10m])')
            return int(float(found[0]["value"][1])) if found else 0

        with httpx.Client(base_url=vllm_server.base_url, timeout=60, trust_env=False) as client:
            for i in range(6):
                r = client.post("/v1/completions", json={"model": vllm_server.model, "prompt": f"hello {i}",
                                                         "max_tokens": 8})
                assert r.status_code == 200, r.text
                wait_for("another scrape of vLLM", lambda n=i: scrapes_of_vllm() >= n + 2, procs, "prometheus")

        missing, asked = [], 0
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                asked += 1
                if not query(prom, expr):
                    missing.append(f"{panel['title']!r} [{target['legendFormat']}]: {expr}")
        assert asked >= len(dashboard["panels"]) and not missing, \
            "dashboard queries that match nothing:\n" + "\n".join(missing)
        assert not query(prom, "vllm:no_such_metric_total"), "an unknown metric must match nothing"
        assert any(call[0].startswith("--query-gpu=") for call in fake_nvidia_smi.calls(smi_log))
        assert query(prom, 'sparkserve_service_gpu_memory_bytes{service="tiny"}')[0]["value"][1] == str(1234 * 1024**2)
    finally:
        procs.stop()

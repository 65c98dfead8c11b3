"""`doctor --live` on Ollama, through real HTTP on 127.0.0.1 against a stand-in (no Ollama binary here).

The stand-in answers /api/version and replays a script of /api/ps bodies in the shape Ollama sends
(ollama/api/types.go ProcessModelResponse), one per request, and records what was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sparkserve.doctor.live import diagnose_live
from sparkserve.engines import engines, get_engine

GIB = 1024**3


def _model(name: str, size_gib: float, vram_gib: float, expires: str, ctx: int = 4096) -> dict:
    return {"name": name, "model": name, "size": int(size_gib * GIB), "size_vram": int(vram_gib * GIB),
            "digest": "0" * 64, "expires_at": expires, "context_length": ctx,
            "details": {"format": "gguf", "family": "qwen3", "quantization_level": "Q4_K_M"}}


@contextmanager
def _ollama(script: list[list[dict]]) -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            if self.path == "/api/version":
                body = {"version": "0.18.2"}
            elif self.path == "/api/ps":
                n = sum(1 for p in asked if p == "/api/ps") - 1
                body = {"models": script[min(n, len(script) - 1)]}
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def _probes():
    return [p for p in (e.live_probe() for e in engines(runnable=True)) if p is not None]


def test_a_model_partly_on_the_cpu_is_named_with_its_share():
    spilled = [_model("qwen3:32b", 20.0, 13.0, "2099-01-01T00:10:00Z", ctx=32768)]
    with _ollama([spilled]) as (url, asked):
        result = diagnose_live(url, _probes(), 1.0)
    assert [f.cause_id for f in result.findings] == ["ollama_model_on_cpu"]
    finding = result.findings[0]
    assert "65 %" in finding.summary and "OLLAMA_NUM_PARALLEL" in finding.fix
    assert finding.evidence[0] == "/api/ps: size_vram 13.0 GiB of size 20.0 GiB"
    assert "/api/version" in asked  # recognised as Ollama (the vLLM probe found no /metrics)
    assert asked.count("/api/ps") >= 2


def test_models_loaded_again_during_the_window_are_reloads():
    a1 = _model("qwen3:8b", 5.0, 5.0, "2099-01-01T00:05:00Z")
    b = _model("gemma3:12b", 8.0, 8.0, "2099-01-01T00:05:30Z")
    a2 = _model("qwen3:8b", 5.0, 5.0, "2099-01-01T00:06:00Z")
    with _ollama([[a1], [b], [a2], [a2]]) as (url, _asked):
        result = diagnose_live(url, _probes(), 2.5)
    ids = [f.cause_id for f in result.findings]
    assert ids == ["ollama_model_reloads"]
    assert "qwen3:8b (1×)" in result.findings[0].summary and "gemma3:12b (1×)" in result.findings[0].summary
    assert "OLLAMA_KEEP_ALIVE" in result.findings[0].fix and "OLLAMA_MAX_LOADED_MODELS" in result.findings[0].fix


def test_a_resident_model_fully_on_the_gpu_names_nothing():
    steady = [_model("qwen3:8b", 5.0, 5.0, "2099-01-01T00:05:00Z")]
    with _ollama([steady]) as (url, _asked):
        result = diagnose_live(url, [get_engine("ollama").live_probe()], 1.0)
    assert result.findings == []
    assert result.to_dict()["findings"] == [] and result.to_dict()["live"]["reads"] >= 2


def test_doctor_live_reads_a_stack_service_through_the_cli(tmp_path):
    import subprocess
    import sys

    spilled = [_model("qwen3:4b", 4.0, 3.0, "2099-01-01T00:10:00Z")]
    with _ollama([spilled]) as (url, asked):
        port = int(url.rsplit(":", 1)[1])
        (tmp_path / "sparkserve.toml").write_text(
            f'[stack]\nhardware = "h100-sxm"\n\n[services.chat]\nengine = "ollama"\nmodel = "qwen3:4b"\n'
            f'port = {port}\nruntime = "native"\n')
        done = subprocess.run([sys.executable, "-m", "sparkserve.cli", "doctor", "--live", "chat", "--window", "1",
                               "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        text = subprocess.run([sys.executable, "-m", "sparkserve.cli", "doctor", "--live", "--window", "1"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [f["cause_id"] for f in data["findings"]] == ["ollama_model_on_cpu"]
    assert data["live"]["url"] == url and data["live"]["reads"] >= 2
    assert "/metrics" not in asked  # the stack names the engine: only Ollama's endpoints are asked
    assert text.returncode == 0 and "ollama_model_on_cpu" in text.stdout and "fix:" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "sparkserve.cli", "doctor", "--live", "nope", "--window", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no service 'nope'" in bad.stderr

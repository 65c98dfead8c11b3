"""`sparkserve exporter`: a real process serving /metrics on 127.0.0.1, scraped over HTTP and read
with prometheus_client's own parser; fresh values on every scrape; stops on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_monitor_readings import OllamaStandIn, ollama_models


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_meminfo(path: Path, available_kb: int) -> None:
    path.write_text(
        f"MemTotal:       127500000 kB\nMemFree:        20000000 kB\nMemAvailable:   {available_kb} kB\n"
        "Buffers:          500000 kB\nCached:         90000000 kB\nShmem:            1000000 kB\n")


class Exporter:
    """`sparkserve exporter` as a child process; its first stdout line says where it serves."""

    def __init__(self, *args: str, cwd: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sparkserve.cli", "exporter", "--port", str(self.port), *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = self.proc.stdout.readline()
        if not self.banner.startswith("serving"):
            self.proc.kill()
            raise AssertionError(f"exporter did not start: {self.banner}{self.proc.stderr.read()}")

    def scrape(self) -> dict[str, list]:
        response = httpx.get(self.url, timeout=10)
        assert response.status_code == 200
        out: dict[str, list] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out

    def stop(self, sig: int = signal.SIGTERM) -> subprocess.CompletedProcess:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, self.banner + out, err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def one(samples: dict[str, list], name: str) -> float:
    (entry,) = samples[name]
    return entry[1]


def test_exporter_serves_memory_ollama_and_no_gpu(tmp_path):
    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, 110_000_000)
    with OllamaStandIn(ollama_models(600)) as ollama, \
            Exporter("--meminfo", str(meminfo), "--ollama", ollama.url, cwd=tmp_path) as exporter:
        assert f"http://127.0.0.1:{exporter.port}/metrics" in exporter.banner
        first = exporter.scrape()
        assert one(first, "sparkserve_memory_total_bytes") == 127_500_000 * 1024
        assert one(first, "sparkserve_memory_available_bytes") == 110_000_000 * 1024
        assert one(first, "sparkserve_memory_page_cache_bytes") == (90_000_000 + 500_000 - 1_000_000) * 1024
        assert "sparkserve_memory_swap_total_bytes" not in first  # not in this meminfo: left out, not 0
        assert first["sparkserve_ollama_up"] == [({"service": "ollama", "url": ollama.url}, 1.0)]
        assert first["sparkserve_ollama_info"] == [({"service": "ollama", "version": "0.12.6"}, 1.0)]
        assert one(first, "sparkserve_ollama_loaded_models") == 1
        labels = {"service": "ollama", "model": "qwen3:8b"}
        assert first["sparkserve_ollama_model_size_bytes"] == [(labels, 6_654_289_920)]
        assert first["sparkserve_ollama_model_vram_bytes"] == [(labels, 6_654_289_920)]
        (expiry,) = first["sparkserve_ollama_model_expiry_seconds"]
        assert expiry[0] == labels and 0 < expiry[1] <= 600
        # No NVML on this machine: the exporter says so and sends no GPU samples.
        assert one(first, "sparkserve_nvml_up") == 0.0
        assert not [name for name in first if name.startswith("sparkserve_gpu_")]
        # Every scrape reads fresh values.
        write_meminfo(meminfo, 50_000_000)
        second = exporter.scrape()
        assert one(second, "sparkserve_memory_available_bytes") == 50_000_000 * 1024
        assert "sparkserve_exporter_scrape_duration_seconds" in second
        done = exporter.stop(signal.SIGTERM)
    assert done.returncode == 0, done.stderr
    assert "exporter stopped" in done.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(exporter.url, timeout=2)


def test_exporter_with_ollama_down_stops_on_sigint(tmp_path):
    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, 110_000_000)
    down = f"http://127.0.0.1:{_free_port()}"
    with Exporter("--meminfo", str(meminfo), "--ollama", down, cwd=tmp_path) as exporter:
        samples = exporter.scrape()
        assert samples["sparkserve_ollama_up"] == [({"service": "ollama", "url": down}, 0.0)]
        assert samples.get("sparkserve_ollama_model_size_bytes", []) == []
        done = exporter.stop(signal.SIGINT)
    assert done.returncode == 0 and "exporter stopped" in done.stdout


def test_exporter_reports_a_busy_port(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "sparkserve.cli", "exporter", "--port", str(port)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_exporter_reads_the_stacks_services(tmp_path, vllm_server):
    """Ollama URLs and native services come from the stack: the real CPU vLLM's process group memory."""
    port = int(vllm_server.base_url.rsplit(":", 1)[1])
    ollama_port = _free_port()
    (tmp_path / "sparkserve.toml").write_text(f"""
[stack]
hardware = "h100-sxm"

[services.tiny]
engine = "vllm"
model = "{vllm_server.model_dir}"
port = {port}
runtime = "native"

[services.local]
engine = "ollama"
model = "qwen3:8b"
port = {ollama_port}
runtime = "native"
""")
    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, 110_000_000)
    with Exporter("--meminfo", str(meminfo), cwd=tmp_path) as exporter:
        samples = exporter.scrape()
        done = exporter.stop()
    assert done.returncode == 0
    rss = dict((labels["service"], value) for labels, value in samples["sparkserve_service_rss_bytes"])
    assert rss["tiny"] > 100 * 1024**2  # API server + engine core of the CPU vLLM
    assert "local" not in rss  # nothing listens there
    assert samples["sparkserve_ollama_up"] == [({"service": "local", "url": f"http://127.0.0.1:{ollama_port}"}, 0.0)]


def test_collector_on_gb10_exports_what_nvml_gives(tmp_path):
    """GB10's NVML: memory NOT_SUPPORTED (left out), utilisation, temperature, power and per-process memory kept."""
    import os

    from prometheus_client import CollectorRegistry, generate_latest

    from sparkserve.monitor.exporter import SparkserveCollector
    from sparkserve.monitor.targets import Target
    from test_monitor_readings import gb10_nvml

    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, 110_000_000)
    me = Target(name="engine", engine="vllm", runtime="native", url="http://127.0.0.1:1", pid=os.getpid())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SparkserveCollector([], lambda: [me], meminfo_path=str(meminfo), nvml=gb10_nvml(os.getpid())))
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    gpu = {"gpu": "0", "name": "NVIDIA GB10"}
    assert one(samples, "sparkserve_nvml_up") == 1.0
    assert samples["sparkserve_gpu_utilization_percent"] == [(gpu, 88.0)]
    assert samples["sparkserve_gpu_temperature_celsius"] == [(gpu, 47.0)]
    assert samples["sparkserve_gpu_power_watts"] == [(gpu, 31.5)]
    assert "sparkserve_gpu_memory_total_bytes" not in samples and "sparkserve_gpu_power_limit_watts" not in samples
    assert samples["sparkserve_gpu_info"][0][0]["unified"] == "true"
    assert samples["sparkserve_gpu_process_memory_bytes"] == [({"gpu": "0", "pid": str(os.getpid())}, 70 * 1024**3)]
    assert samples["sparkserve_service_gpu_memory_bytes"] == [({"service": "engine"}, 70 * 1024**3)]
    assert samples["sparkserve_service_rss_bytes"][0][1] > 0
    assert "sparkserve_ollama_up" not in samples  # no Ollama configured: nothing to say


def test_concurrent_scrapes_share_one_read_of_a_hung_source(tmp_path):
    """Six scrapes at once while Ollama accepts and never answers: they share one read of it instead
    of queueing one timeout each behind it."""
    import threading

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = hung.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    meminfo = tmp_path / "meminfo"
    write_meminfo(meminfo, 110_000_000)
    url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    try:
        with Exporter("--meminfo", str(meminfo), "--ollama", url, cwd=tmp_path) as exporter:
            results: list[dict] = []
            scrapers = [threading.Thread(target=lambda: results.append(exporter.scrape())) for _ in range(6)]
            for t in scrapers:
                t.start()
            for t in scrapers:
                t.join(timeout=120)
            exporter.stop()
    finally:
        hung.close()
        for conn in accepted:
            conn.close()
    assert len(results) == 6 and all(r["sparkserve_ollama_up"][0][1] == 0.0 for r in results)
    assert len(accepted) < 6  # one read per batch of waiting scrapes, not one per scrape

"""Readings behind `status`, `monitor` and the exporter: vLLM metrics across releases (one alias
table), rates from counter deltas, Ollama's /api/ps over real HTTP, GPU readings with no NVML and
with GB10's partial NVML, and memory from a meminfo file."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from fake_nvml import FakeNVML
from sparkserve.engines.vllm import METRIC_ALIASES
from sparkserve.monitor.memory import read_host_memory
from sparkserve.monitor.ollama_state import parse_ps, read_ollama
from sparkserve.monitor.sampler import Sampler
from sparkserve.monitor.targets import Target
from sparkserve.monitor.view import snapshot_dict, sparkline, status_view
from sparkserve.monitor.vllm_metrics import rates, sample_from_text

REPO = Path(__file__).resolve().parents[1]
METRICS_032 = (REPO / "tests" / "data" / "vllm_cpu" / "metrics-sample.txt").read_text()
GIB = 1024**3

# The same readings as vLLM 0.6-0.9 (V0 engine) named them.
METRICS_V0 = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="old"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="old"} 2.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="old"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="old"} 0.42
# TYPE vllm:gpu_prefix_cache_hit_rate gauge
vllm:gpu_prefix_cache_hit_rate{model_name="old"} 0.25
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="old"} 1000.0
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="old"} 7.0
"""


def test_alias_table_maps_old_and_new_names():
    assert METRIC_ALIASES["kv_cache_usage_perc"][:2] == ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]
    assert "vllm:num_requests_swapped" in METRIC_ALIASES["num_requests_swapped"]
    assert "vllm:time_per_output_token_seconds" in METRIC_ALIASES["inter_token_latency_seconds"]
    for names in METRIC_ALIASES.values():
        assert names and all(n.startswith("vllm:") for n in names)


def test_reads_vllm_032_metrics():
    s = sample_from_text(METRICS_032, at=0.0)
    assert s.model == "tiny"
    assert s.gauge("num_requests_running") == 0.0 and s.gauge("num_requests_waiting") == 0.0
    assert s.gauge("kv_cache_usage_perc") == 0.0
    assert s.gauge("num_requests_swapped") is None  # gone from V1: n/a, not 0
    assert s.counters["generation_tokens_total"] == 96.0 and s.counters["prompt_tokens_total"] == 37.0
    assert s.counters["request_success_total"] == 4.0  # summed over finished_reason
    assert s.kv_cache_tokens == 16384 * 128  # cache_config_info: num_gpu_blocks x block_size


def test_reads_v0_names_through_the_aliases():
    s = sample_from_text(METRICS_V0, at=0.0)
    assert s.model == "old"
    assert s.gauge("kv_cache_usage_perc") == 0.42
    assert s.gauge("num_requests_swapped") == 1.0
    assert s.gauge("prefix_cache_hit_rate") == 0.25
    r = rates(sample_from_text(METRICS_V0, at=0.0), sample_from_text(METRICS_V0.replace("1000.0", "1500.0"), at=2.0))
    assert r.generation_tps == 250.0
    assert r.prefix_cache_hit_rate == 0.25  # V0 has no hit/query counters: its gauge
    assert r.preemptions == 0.0


def test_rates_over_the_interval_and_across_a_restart():
    before = sample_from_text(METRICS_032, at=10.0)
    later = METRICS_032.replace('generation_tokens_total{engine="0",model_name="tiny"} 96.0',
                                'generation_tokens_total{engine="0",model_name="tiny"} 496.0')
    later = later.replace('prefix_cache_queries_total{engine="0",model_name="tiny"} 37.0',
                          'prefix_cache_queries_total{engine="0",model_name="tiny"} 137.0')
    later = later.replace('prefix_cache_hits_total{engine="0",model_name="tiny"} 0.0',
                          'prefix_cache_hits_total{engine="0",model_name="tiny"} 25.0')
    r = rates(before, sample_from_text(later, at=12.0))
    assert r.interval_s == 2.0 and r.generation_tps == 200.0
    assert r.prompt_tps == 0.0 and r.prefix_cache_hit_rate == 0.25
    # A restarted server starts its counters at 0 again: no rate for that interval.
    restarted = METRICS_032.replace('generation_tokens_total{engine="0",model_name="tiny"} 96.0',
                                    'generation_tokens_total{engine="0",model_name="tiny"} 5.0')
    assert rates(sample_from_text(later, at=12.0), sample_from_text(restarted, at=14.0)).generation_tps is None
    assert rates(None, before).generation_tps is None


def test_metrics_page_that_is_not_prometheus_text_is_na():
    s = sample_from_text("<html>not metrics</html>{\n", at=0.0)  # another server on the port
    assert s.gauges == {} and s.counters == {} and s.model is None
    with pytest.raises(ValueError):  # a broken line of a metric we read: read_vllm reports it as n/a
        sample_from_text("vllm:num_requests_running{oops 1\n", at=0.0)


# --- Ollama over real HTTP (its documented /api/ps and /api/version) -----------------------------

class OllamaStandIn:
    """An HTTP server on 127.0.0.1 answering /api/version and /api/ps as Ollama's API docs show."""

    def __init__(self, models: list[dict], port: int = 0):
        body_ps = json.dumps({"models": models}).encode()
        body_version = json.dumps({"version": "0.12.6"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = {"/api/ps": body_ps, "/api/version": body_version}.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def ollama_models(expires_in_s: float = 1800) -> list[dict]:
    expires = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).astimezone(timezone(timedelta(hours=-7)))
    stamp = expires.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123-07:00"  # Go prints nanoseconds
    return [{
        "name": "qwen3:8b", "model": "qwen3:8b", "size": 6_654_289_920, "digest": "500a1f06",
        "details": {"format": "gguf", "family": "qwen3", "parameter_size": "8.2B", "quantization_level": "Q4_K_M"},
        "expires_at": stamp, "size_vram": 6_654_289_920, "context_length": 8192,
    }]


def test_ollama_ps_and_version_over_http():
    with OllamaStandIn(ollama_models(1800)) as server, httpx.Client(timeout=2) as client:
        state = read_ollama(client, server.url)
    assert state.up and state.version == "0.12.6"
    (m,) = state.models
    assert m.name == "qwen3:8b" and m.size_bytes == 6_654_289_920 and m.size_vram_bytes == 6_654_289_920
    assert 1700 < m.expires_in_s <= 1800 and m.context_length == 8192


def test_ollama_down_and_odd_entries():
    with httpx.Client(timeout=2) as client:
        state = read_ollama(client, f"http://127.0.0.1:{_free_port()}")
    assert not state.up and state.error == "not listening" and state.models == []
    assert parse_ps({"models": [{"size": 1}, "junk", {"name": "x", "size": "big"}]})[0].size_bytes is None
    assert parse_ps(None) == []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- GPU and memory ----------------------------------------------------------------------------

def _meminfo(tmp_path: Path, available_kb: int = 110_000_000) -> str:
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       127500000 kB\nMemFree:        20000000 kB\nMemAvailable:   {available_kb} kB\n"
        "Buffers:          500000 kB\nCached:         90000000 kB\nShmem:            1000000 kB\n"
        "SwapTotal:       16000000 kB\nSwapFree:        16000000 kB\n")
    return str(path)


def test_host_memory_from_meminfo(tmp_path):
    m = read_host_memory(_meminfo(tmp_path))
    assert m.total == 127_500_000 * 1024 and m.available == 110_000_000 * 1024
    assert m.page_cache == (90_000_000 + 500_000 - 1_000_000) * 1024
    assert m.used == (127_500_000 - 110_000_000) * 1024
    assert read_host_memory(str(tmp_path / "missing")).total is None


def gb10_nvml(process_pid: int) -> FakeNVML:
    """A GB10 under load: `process_pid` holds 70 GiB; a second process's memory is not available."""
    return FakeNVML(power_mw=31_500, temperature_c=47, utilization_pct=88,
                    processes=[(process_pid, 70 * GIB), (999_999_999, None)])  # None: NVML_VALUE_NOT_AVAILABLE


def _render(snapshot) -> str:
    console = Console(record=True, width=200)
    console.print(status_view(snapshot))
    return console.export_text()


def test_status_on_gb10_partial_nvml(tmp_path):
    me = Target(name="engine", engine="vllm", runtime="native", url=f"http://127.0.0.1:{_free_port()}", pid=os.getpid())
    with Sampler(lambda: [me], nvml=gb10_nvml(os.getpid()), meminfo_path=_meminfo(tmp_path)) as sampler:
        snapshot = sampler.poll()
    (gpu,) = snapshot.gpus.gpus
    assert gpu.unified and gpu.memory_total_gib is None and gpu.utilization_pct == 88 and gpu.power_w == 31.5
    (reading,) = snapshot.services
    assert reading.health == "down" and reading.gpu_memory_bytes == 70 * GIB  # this test's process holds it
    assert reading.rss_bytes and reading.uptime_s is not None
    data = snapshot_dict(snapshot)
    assert data["gpu"]["nvml"] and data["gpu"]["devices"][0]["memory_total_gib"] is None
    assert data["gpu"]["devices"][0]["processes"][0] == {"pid": os.getpid(), "used_memory_bytes": 70 * GIB,
                                                          "service": "engine"}
    assert data["gpu"]["devices"][0]["processes"][1]["used_memory_bytes"] is None
    assert data["memory"]["unified"] and data["memory"]["available_bytes"] == 110_000_000 * 1024
    assert data["services"][0]["requests_running"] is None and data["services"][0]["api_status"] == "down"
    text = _render(snapshot)
    assert "unified memory: 104.9 GiB available" in text and "engine: 70.0 GiB" in text
    assert "88%" in text and "47 C" in text and "n/a" in text


def test_status_with_no_nvml(tmp_path):
    """This machine: nvidia-ml-py is installed but no driver, so nvmlInit fails."""
    with Sampler(lambda: [], meminfo_path=_meminfo(tmp_path)) as sampler:
        snapshot = sampler.poll()
    assert snapshot.gpus.gpus == []
    data = snapshot_dict(snapshot)
    assert data["gpu"]["devices"] == [] and data["gpu"]["nvml"] is False and data["services"] == []
    text = _render(snapshot)
    assert "GPU: n/a" in text and "host memory" in text


def test_sparkline_keeps_gaps():
    assert sparkline([0, 1, 2, None, 4]) == "▁▂▄ █"
    assert sparkline([None, None]) == "  " and sparkline([]) == ""


def test_a_histogram_whose_name_ends_in_total_is_read_as_a_histogram():
    """vLLM's vllm:iteration_tokens_total is a histogram (tokens per engine step): its _count is the steps."""
    from sparkserve.readings.metrics import read_text

    text = "\n".join([
        "# TYPE vllm:iteration_tokens_total histogram",
        'vllm:iteration_tokens_total_bucket{engine="0",le="512.0"} 150.0',
        'vllm:iteration_tokens_total_bucket{engine="0",le="+Inf"} 152.0',
        'vllm:iteration_tokens_total_count{engine="0"} 152.0',
        'vllm:iteration_tokens_total_sum{engine="0"} 47616.0',
        "# TYPE vllm:num_preemptions_total counter",
        'vllm:num_preemptions_total{engine="0"} 7.0',
    ])
    m = read_text(text, METRIC_ALIASES)
    assert m.counts["iteration_tokens"] == 152.0 and m.sums["iteration_tokens"] == 47616.0
    assert m.buckets["iteration_tokens"] == {512.0: 150.0, float("inf"): 152.0}
    assert m.counter("num_preemptions_total") == 7.0 and "iteration_tokens" not in m.counters

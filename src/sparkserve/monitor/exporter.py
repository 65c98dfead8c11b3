"""Prometheus metrics for what exposes none: Ollama's loaded models, unified memory from
/proc/meminfo, the NVML readings a GB10 does give, and what each service's processes hold.

A custom Collector reads fresh values on every scrape (nothing is cached between scrapes).
One scrape reads the sources at a time; scrapes that arrive meanwhile share its result instead
of queueing behind it, so a hung source costs every scraper one timeout, not one each. A reading
that is missing is left out of the scrape, never sent as 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sparkserve.hardware.detect import Detection, detect
from sparkserve.monitor.memory import read_host_memory
from sparkserve.monitor.ollama_state import read_ollama
from sparkserve.monitor.sampler import process_memory, service_pids
from sparkserve.monitor.targets import Target

PREFIX = "sparkserve"
MAX_MODELS = 32  # per Ollama server: bounds label cardinality
MAX_PROCESSES = 64  # per GPU


@dataclass(frozen=True)
class OllamaSource:
    service: str
    url: str


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels or [])


class SparkserveCollector(Collector):
    """Reads every source on each `collect()`; one scrape at a time."""

    def __init__(self, ollama: list[OllamaSource], services: Callable[[], list[Target]] | None = None, *,
                 meminfo_path: str = "/proc/meminfo", nvml: Any = None, timeout_s: float = 2.0):
        self._ollama = ollama
        self._services = services or (lambda: [])
        self._meminfo_path = meminfo_path
        self._nvml = nvml
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._inflight: Future[list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # names vary with what the host has; registration must not trigger a scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            shared = self._inflight
            if shared is None:
                shared = self._inflight = Future()
                leader = True
            else:
                leader = False
        if leader:
            try:
                shared.set_result(self._scrape())
            except BaseException as exc:  # noqa: BLE001 - waiting scrapes get the same failure
                shared.set_exception(exc)
            finally:
                with self._lock:
                    self._inflight = None
        yield from shared.result()

    def _scrape(self) -> list[Metric]:
        started = time.monotonic()
        metrics = [*self._memory(), *self._ollama_metrics()]
        detection = detect(self._meminfo_path, nvml=self._nvml)
        metrics += self._gpu_metrics(detection)
        metrics += self._service_metrics(detection)
        duration = _gauge("exporter_scrape_duration_seconds", "Time this scrape took to read every source.")
        duration.add_metric([], time.monotonic() - started)
        metrics.append(duration)
        return metrics

    def _memory(self) -> list[Metric]:
        m = read_host_memory(self._meminfo_path)
        readings = {
            "total": (m.total, "MemTotal: all memory (on GB10 shared by CPU and GPU)."),
            "available": (m.available, "MemAvailable: what new allocations can get without swapping."),
            "free": (m.free, "MemFree: unused pages (vLLM's start-up check on unified memory looks at this)."),
            "page_cache": (m.page_cache, "Cached + Buffers - Shmem: clean page cache that drop_caches can free."),
            "swap_total": (m.swap_total, "SwapTotal."),
            "swap_free": (m.swap_free, "SwapFree."),
        }
        out: list[Metric] = []
        for key, (value, doc) in readings.items():
            if value is not None:
                g = _gauge(f"memory_{key}_bytes", doc)
                g.add_metric([], value)
                out.append(g)
        return out

    def _ollama_metrics(self) -> list[Metric]:
        up = _gauge("ollama_up", "1 when Ollama's /api/version answers.", ["service", "url"])
        info = _gauge("ollama_info", "Ollama's version.", ["service", "version"])
        count = _gauge("ollama_loaded_models", "Models Ollama holds in memory (/api/ps).", ["service"])
        size = _gauge("ollama_model_size_bytes", "Memory a loaded model takes in all.", ["service", "model"])
        vram = _gauge("ollama_model_vram_bytes", "Part of a loaded model in GPU memory.", ["service", "model"])
        expiry = _gauge("ollama_model_expiry_seconds", "Seconds until Ollama unloads the model (keep_alive).",
                        ["service", "model"])
        with httpx.Client(timeout=self._timeout_s, trust_env=False) as client:
            for source in self._ollama:
                state = read_ollama(client, source.url)
                up.add_metric([source.service, source.url], 1.0 if state.up else 0.0)
                if not state.up:
                    continue
                if state.version:
                    info.add_metric([source.service, state.version], 1.0)
                count.add_metric([source.service], len(state.models))
                for m in state.models[:MAX_MODELS]:
                    if m.size_bytes is not None:
                        size.add_metric([source.service, m.name], m.size_bytes)
                    if m.size_vram_bytes is not None:
                        vram.add_metric([source.service, m.name], m.size_vram_bytes)
                    if m.expires_in_s is not None:
                        expiry.add_metric([source.service, m.name], m.expires_in_s)
        return [up, info, count, size, vram, expiry]

    def _gpu_metrics(self, d: Detection) -> list[Metric]:
        nvml_up = _gauge("nvml_up", "1 when NVML answered and listed at least one GPU.")
        nvml_up.add_metric([], 1.0 if d.gpus else 0.0)
        out: list[Metric] = [nvml_up]
        if not d.gpus:
            return out
        labels = ["gpu", "name"]
        info = _gauge("gpu_info", "GPU, driver and the CUDA version the driver supports.",
                      ["gpu", "name", "driver", "cuda", "unified"])
        families = {
            "utilization_percent": _gauge(
                "gpu_utilization_percent", "GPU busy time over NVML's last sample period.", labels
            ),
            "temperature_celsius": _gauge("gpu_temperature_celsius", "GPU temperature.", labels),
            "power_watts": _gauge("gpu_power_watts", "Power draw.", labels),
            "power_limit_watts": _gauge("gpu_power_limit_watts", "Enforced power limit.", labels),
            "memory_total_bytes": _gauge(
                "gpu_memory_total_bytes", "GPU memory (absent on GB10: NOT_SUPPORTED).", labels
            ),
            "memory_used_bytes": _gauge("gpu_memory_used_bytes", "GPU memory in use (absent on GB10).", labels),
        }
        procs = _gauge("gpu_process_memory_bytes", "GPU memory per compute process (works on GB10).", ["gpu", "pid"])
        gib = 1024**3
        for g in d.gpus:
            key = [str(g.index), g.name]
            info.add_metric([*key, d.driver_version or "", d.cuda_driver_version or "", str(g.unified).lower()], 1.0)
            values = {
                "utilization_percent": g.utilization_pct,
                "temperature_celsius": g.temperature_c,
                "power_watts": g.power_w,
                "power_limit_watts": g.power_limit_w,
                "memory_total_bytes": round(g.memory_total_gib * gib) if g.memory_total_gib is not None else None,
                "memory_used_bytes": round(g.memory_used_gib * gib) if g.memory_used_gib is not None else None,
            }
            for name, value in values.items():
                if value is not None:
                    families[name].add_metric(key, float(value))
            for p in g.processes[:MAX_PROCESSES]:
                if p.used_memory_bytes is not None:
                    procs.add_metric([str(g.index), str(p.pid)], p.used_memory_bytes)
        return [*out, info, *families.values(), procs]

    def _service_metrics(self, d: Detection) -> list[Metric]:
        rss = _gauge(
            "service_rss_bytes", "Resident memory of a service's processes (native: its process group).", ["service"]
        )
        gpu = _gauge(
            "service_gpu_memory_bytes", "NVML per-process GPU memory summed over a service's processes.", ["service"]
        )
        try:
            targets = self._services()
        except Exception:  # noqa: BLE001 - a stack that no longer loads leaves these out, not the scrape
            targets = []
        for t in targets:
            held_rss, held_gpu = process_memory(service_pids(t), d)
            if held_rss is not None:
                rss.add_metric([t.name], held_rss)
            if held_gpu is not None:
                gpu.add_metric([t.name], held_gpu)
        return [rss, gpu]


def serve(collector: Collector, bind: str, port: int, stop: threading.Event, ready: Callable[[str], None]) -> None:
    """Serve /metrics on bind:port until `stop` is set; the server is shut down and closed after."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=bind, registry=registry)
    try:
        host = f"[{bind}]" if ":" in bind else bind
        ready(f"http://{host}:{server.server_address[1]}/metrics")
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

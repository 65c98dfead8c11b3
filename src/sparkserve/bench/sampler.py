"""Read the server and host while load runs: vLLM /metrics, Ollama /api/ps, MemAvailable, NVML.

Counters are read at each load point's start and end (deltas: tokens, prefix-cache queries and
hits, preemptions, queue-time histogram); gauges are sampled every interval (KV-cache usage,
requests running and waiting, host MemAvailable, GPU readings) and reported with their peaks.
Every reading may be missing: a server without /metrics, a GPU without NVML, a host without
/proc give None, never an error. Metric names come from the engine (`Engine.metric_aliases`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from sparkserve.bench.target import Target
from sparkserve.readings.meminfo import mem_available_gib, meminfo_path
from sparkserve.readings.metrics import Metrics, aliases_for, read_text
from sparkserve.readings.nvml import Nvml
from sparkserve.units import GIB

# Snapshot: one /metrics read (readings/metrics.py defines each reading: counters summed over
# engines, KV-cache usage their mean, histogram buckets summed by bound).
Snapshot = Metrics


@dataclass
class Reading:
    """One periodic sample; `t` is seconds since the benchmark began."""

    t: float
    kv_cache_usage: float | None = None
    running: float | None = None
    waiting: float | None = None
    mem_available_gib: float | None = None
    gpu_util_pct: float | None = None
    gpu_mem_used_gib: float | None = None
    gpu_power_w: float | None = None
    ollama_vram_gib: float | None = None


def _metrics_path(engine: str) -> str | None:
    """The engine's metrics path; an unidentified OpenAI-compatible server is tried at /metrics."""
    from sparkserve.engines import find_engine

    found = find_engine(engine)
    return found.metrics_path if found is not None else "/metrics"


class Sampler:
    """Polls the target every `interval_s` on its own small HTTP session (never the load's connections)."""

    def __init__(self, target: Target, interval_s: float, origin: float) -> None:
        self.target = target
        self.interval_s = interval_s
        self.origin = origin  # perf_counter of the benchmark's start
        self.readings: list[Reading] = []
        self.metrics_ok: bool | None = None  # None until the first try
        self.info: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._nvml: Nvml | None = None
        self._task: asyncio.Task | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The sampler's own session: probes must not wait behind the load's connection limit."""
        assert self._session is not None
        return self._session

    async def __aenter__(self) -> Sampler:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2),
                                              timeout=aiohttp.ClientTimeout(total=5.0))
        self._nvml = await asyncio.to_thread(Nvml)
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._nvml is not None:
            self._nvml.close()

    async def snapshot(self) -> Snapshot | None:
        """Counters now (vLLM only); None when the server has no /metrics."""
        if self.target.is_ollama or self._session is None or self.metrics_ok is False:
            return None
        path = _metrics_path(self.target.engine)
        if path is None:
            self.metrics_ok = False
            return None
        try:
            async with self._session.get(self.target.base_url + path, headers=self.target.headers()) as resp:
                if resp.status != 200:
                    self.metrics_ok = False
                    return None
                text = await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        snap = await asyncio.to_thread(read_text, text, aliases_for(self.target.engine), time.perf_counter())
        self.metrics_ok = True
        if snap.info and not self.info:
            self.info = snap.info
        return snap

    async def _ollama_vram(self) -> float | None:
        assert self._session is not None
        try:
            async with self._session.get(self.target.base_url + "/api/ps") as resp:
                data = await resp.json() if resp.status == 200 else {}
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None
        models = data.get("models", []) if isinstance(data, dict) else []
        sizes = [int(m["size_vram"]) for m in models if isinstance(m, dict) and isinstance(m.get("size_vram"), int)]
        return sum(sizes) / GIB if sizes else None

    async def sample(self) -> Snapshot | None:
        """Take one reading (kept in `readings`) and return the /metrics snapshot behind it."""
        reading = Reading(t=time.perf_counter() - self.origin)
        snap = None
        if self.target.is_ollama:
            reading.ollama_vram_gib = await self._ollama_vram()
        else:
            snap = await self.snapshot()
            if snap is not None:
                reading.kv_cache_usage = snap.gauges.get("kv_cache_usage_perc")
                reading.running = snap.gauges.get("num_requests_running")
                reading.waiting = snap.gauges.get("num_requests_waiting")
        reading.mem_available_gib = mem_available_gib(meminfo_path())
        if self._nvml is not None and self._nvml.handles:
            for key, value in (await asyncio.to_thread(self._nvml.read)).items():
                setattr(reading, key, value)
        self.readings.append(reading)
        return snap

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sample()

"""One reading of everything (`Snapshot`) and a `Sampler` that keeps the last one for rates
and a short history for sparklines.

A service that is down, restarting or not sparkserve's own is still a row: its readings are
n/a and the next poll tries again. Nothing here raises for a missing reading.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sparkserve.hardware.detect import Detection, detect
from sparkserve.monitor.memory import HostMemory, read_host_memory
from sparkserve.monitor.ollama_state import OllamaState, read_ollama
from sparkserve.monitor.targets import Target
from sparkserve.monitor.vllm_metrics import VllmRates, VllmSample, rates, read_vllm
from sparkserve.readings import proc as procs

HISTORY = 120  # points per series: 4 minutes at the default 2 s interval
SERIES = ("generation_tps", "kv_cache_usage", "queue")


@dataclass(frozen=True)
class ServiceReading:
    """What one service is doing now; None fields are n/a."""

    target: Target
    health: str  # healthy, unhealthy, down
    error: str | None = None
    model: str | None = None
    uptime_s: float | None = None
    vllm: VllmSample | None = None
    rates: VllmRates = field(default_factory=VllmRates)
    ollama: OllamaState | None = None
    pids: tuple[int, ...] = ()
    rss_bytes: int | None = None
    gpu_memory_bytes: int | None = None

    @property
    def name(self) -> str:
        return self.target.name

    def gauge(self, name: str) -> float | None:
        return self.vllm.gauge(name) if self.vllm else None


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # wall clock
    services: list[ServiceReading]
    gpus: Detection
    memory: HostMemory


class Sampler:
    """Reads targets, GPUs and memory; `poll()` returns a Snapshot and extends the history."""

    def __init__(self, targets: Callable[[], list[Target]], *, nvml: Any = None, meminfo_path: str = "/proc/meminfo",
                 timeout_s: float = 3.0, history: int = HISTORY):
        self._targets = targets
        self._nvml = nvml
        self._meminfo_path = meminfo_path
        self._client = httpx.Client(timeout=timeout_s, trust_env=False)
        self._budget_s = timeout_s
        self._busy: dict[str, Any] = {}  # target name -> its reader thread still waiting for an answer
        self._previous: dict[str, VllmSample] = {}
        self.history: dict[str, dict[str, deque[float | None]]] = {}
        self.memory_history: deque[float | None] = deque(maxlen=history)
        self._history_len = history

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self) -> Snapshot:
        try:
            targets = self._targets()
        except Exception:  # noqa: BLE001 - a broken stack or runtime lookup must not stop a live view
            targets = []
        gpus = detect(self._meminfo_path, nvml=self._nvml)
        memory = read_host_memory(self._meminfo_path)
        readings = self._read_all(targets, gpus)
        self._remember(readings, memory)
        return Snapshot(taken_at=time.time(), services=readings, gpus=gpus, memory=memory)

    def _read_all(self, targets: list[Target], gpus: Detection) -> list[ServiceReading]:
        """Every target at once, within one timeout in total: a hung service is reported as not
        answering instead of holding up the others (its reader thread is left to time out)."""
        import threading

        found: dict[int, ServiceReading] = {}

        def read(i: int, target: Target) -> None:
            try:
                found[i] = self._read(target, gpus)
            except Exception as exc:  # noqa: BLE001 - one broken reading must not lose the others
                found[i] = ServiceReading(target=target, health="down", error=f"{type(exc).__name__}: {exc}")

        late = f"no answer within {self._budget_s:g} s"
        workers = {}
        for i, t in enumerate(targets):
            if t.name in self._busy and self._busy[t.name].is_alive():
                continue  # still waiting on the last poll: do not stack another reader on a hung service
            workers[t.name] = threading.Thread(target=read, args=(i, t), daemon=True)
            workers[t.name].start()
        deadline = time.monotonic() + self._budget_s
        for worker in workers.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        self._busy = {name: w for name, w in {**self._busy, **workers}.items() if w.is_alive()}
        return [found.get(i) or ServiceReading(target=t, health="unhealthy", error=late) for i, t in enumerate(targets)]

    def _read(self, target: Target, gpus: Detection) -> ServiceReading:
        """The engine decides what can be read: Prometheus metrics (vLLM), the loaded models (Ollama),
        or only whether its health path answers."""
        from sparkserve.engines import get_engine
        from sparkserve.runtime.status import answers

        pids = service_pids(target)
        held = process_memory(pids, gpus)
        common: dict[str, Any] = {"target": target, "pids": tuple(pids), "uptime_s": _uptime(target),
                                  "rss_bytes": held[0], "gpu_memory_bytes": held[1]}
        engine = get_engine(target.engine)
        if engine.metrics_path:
            sample = read_vllm(self._client, target.url, time.monotonic(), target.api_key, engine=target.engine)
            previous = self._previous.get(target.name)
            if sample.counters:
                self._previous[target.name] = sample
            else:  # down or restarting: the next rate starts from the next good read
                self._previous.pop(target.name, None)
            health = "healthy" if sample.healthy else ("down" if sample.error == "not listening" else "unhealthy")
            return ServiceReading(health=health, error=sample.error, model=sample.model, vllm=sample,
                                  rates=rates(previous, sample), **common)
        if not engine.loaded_models_path:
            ok = answers(target.engine, target.url)
            return ServiceReading(health="healthy" if ok else "down", error=None if ok else "not answering",
                                  model=target.row.get("model"), **common)
        state = read_ollama(self._client, target.url)
        model = ", ".join(m.name for m in state.models) or None
        return ServiceReading(health="healthy" if state.up else "down", error=state.error, model=model,
                              ollama=state, **common)

    def _remember(self, readings: list[ServiceReading], memory: HostMemory) -> None:
        for r in readings:
            series = self.history.setdefault(r.name, {k: deque(maxlen=self._history_len) for k in SERIES})
            running, waiting = r.gauge("num_requests_running"), r.gauge("num_requests_waiting")
            series["generation_tps"].append(r.rates.generation_tps)
            series["kv_cache_usage"].append(r.gauge("kv_cache_usage_perc"))
            series["queue"].append(None if running is None and waiting is None else (running or 0) + (waiting or 0))
        self.memory_history.append(memory.used)


def service_pids(target: Target) -> list[int]:
    """The processes that make up a service: a native pid's process group, or a container's cgroup."""
    if target.pid is not None:
        members = procs.service_processes(target.pid)
        if members:
            return members
    if target.container_id:
        return container_pids(target.container_id)
    return []


def container_pids(container_id: str) -> list[int]:
    """Host pids of a container's processes (their cgroup path names the container)."""
    try:
        entries = [e for e in os.listdir(procs.PROC) if e.isdigit()]
    except OSError:
        return []
    return sorted(int(e) for e in entries if procs.container_of(int(e)) == container_id)


def process_memory(pids: list[int], gpus: Detection) -> tuple[int | None, int | None]:
    """(summed RSS, summed NVML per-process GPU memory) of a service's processes."""
    if not pids:
        return None, None
    wanted = set(pids)
    gpu_values = [p.used_memory_bytes for g in gpus.gpus for p in g.processes
                  if p.pid in wanted and p.used_memory_bytes is not None]
    return procs.summed_rss_bytes(pids), (sum(gpu_values) if gpu_values else None)


def _uptime(target: Target) -> float | None:
    if target.started_at is not None:
        return max(0.0, time.time() - target.started_at)
    return procs.uptime_s(target.pid) if target.pid is not None else None

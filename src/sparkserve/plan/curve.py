"""The latency/throughput curve: what a server does as more requests arrive together.

Each level is a number of clients sending requests back to back. Up to what the engine admits
(`max-num-seqs` / Ollama's parallel slots, and the requests of `prompt + output` tokens the KV
cache holds) they decode together; above it the extra requests wait in the queue, so decode speed
and aggregate stay at the cap's and time to first token grows by the wait. This curve is the
prior `sparkserve tune` and the model pages start from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sparkserve.plan.memory import Deployment, MemoryPlan
from sparkserve.plan.settings import VllmSettings
from sparkserve.plan.speed import Workload, speed

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class CurvePoint:
    concurrency: int  # requests in flight (clients sending back to back)
    running: int  # of which decode together; the rest queue
    decode_tps: float  # one request's tokens/s
    aggregate_tps: float  # all running requests' tokens/s while decoding
    output_tps: float  # output tokens/s including prefills and waits
    ttft_ms: float
    itl_ms: float
    ceiling_tps: float  # aggregate at 100 % spec bandwidth and compute, no overhead
    capped_by: str | None  # "kv_cache", "max_num_seqs" or "num_parallel" when running < concurrency

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "running": self.running,
            "decode_tps": round(self.decode_tps, 2),
            "aggregate_tps": round(self.aggregate_tps, 1),
            "output_tps": round(self.output_tps, 1),
            "ttft_ms": round(self.ttft_ms, 1),
            "itl_ms": round(self.itl_ms, 2),
            "ceiling_tps": round(self.ceiling_tps, 1),
            "capped_by": self.capped_by,
        }


@dataclass(frozen=True)
class Admission:
    requests: int  # requests that decode together at most
    by: str  # what sets it: "kv_cache" or the engine's sequence limit
    kv_requests: int  # requests of prompt + output tokens the KV cache holds
    seq_limit: int


def admitted(mem: MemoryPlan, work: Workload) -> Admission:
    """How many requests of this workload the engine runs together."""
    seq_limit = int(mem.settings.concurrency)
    seq_name = "max_num_seqs" if isinstance(mem.settings, VllmSettings) else "num_parallel"
    kv_requests = int(mem.kv_tokens // max(1, work.prompt_len + work.output_len))
    if kv_requests < seq_limit:
        return Admission(max(1, kv_requests), "kv_cache", kv_requests, seq_limit)
    return Admission(seq_limit, seq_name, kv_requests, seq_limit)


def concurrency_curve(dep: Deployment, mem: MemoryPlan, work: Workload,
                      levels: tuple[int, ...] = DEFAULT_LEVELS) -> list[CurvePoint]:
    cap = admitted(mem, work)
    points = []
    for level in levels:
        running = min(level, cap.requests)
        s = speed(dep, dataclasses.replace(work, batch=running))
        ttft = s.ttft_ms
        if level > running:
            # Closed loop: a queued request waits for (level - running) / running service times.
            service_ms = s.ttft_ms + max(work.output_len - 1, 0) * s.itl_ms
            ttft += (level - running) / running * service_ms
        points.append(CurvePoint(
            concurrency=level, running=running, decode_tps=s.decode_tps, aggregate_tps=s.aggregate_tps,
            output_tps=s.output_tps, ttft_ms=ttft, itl_ms=s.itl_ms, ceiling_tps=s.roofline_aggregate_tps,
            capped_by=cap.by if level > running else None,
        ))
    return points


def parse_levels(text: str) -> tuple[int, ...]:
    """`1,2,4,8` -> (1, 2, 4, 8); ValueError naming the bad part."""
    levels = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(part)
        levels.append(int(part))
    return tuple(sorted(set(levels)))

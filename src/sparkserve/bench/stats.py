"""Distributions of latencies: mean and the percentiles every benchmark peer reports.

Percentiles interpolate linearly between closest ranks (numpy's default, which `vllm bench
serve` uses), so the two tools agree on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0-100, got {q}")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def describe(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, min, max and p50/p90/p95/p99; None for each statistic when there are no values."""
    if not values:
        return {"count": 0, "mean": None, "min": None, "max": None, **{f"p{q}": None for q in PERCENTILES}}
    ordered = sorted(values)
    out: dict[str, float | int | None] = {
        "count": len(ordered),
        "mean": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(ordered, q)
    return out

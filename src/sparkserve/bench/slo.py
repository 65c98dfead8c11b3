"""Service-level objectives: `--slo ttft:p95<500ms`, their check, and goodput.

An SLO names a metric (ttft, tpot, itl, e2e), a statistic (mean, p50, p90, p95, p99) and a
bound. It is judged twice: over the run (the statistic of all requests must meet the bound:
"attained") and per request (the request's own value must meet the bound; goodput counts the
requests that meet every SLO, as DistServe and `vllm bench serve --goodput` define it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparkserve.errors import UserError

METRICS = ("ttft", "tpot", "itl", "e2e")
STATISTICS = ("mean", "p50", "p90", "p95", "p99")
_UNITS = {"ms": 1.0, "s": 1000.0, "us": 0.001}
_SLO = re.compile(r"^\s*([a-z0-9]+)\s*:\s*([a-z0-9]+)\s*(<=|<)\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$", re.IGNORECASE)
_EXAMPLE = "e.g. --slo ttft:p95<500ms or --slo tpot:p99<50ms"


@dataclass(frozen=True)
class Slo:
    metric: str  # ttft, tpot, itl, e2e
    statistic: str  # mean, p50, p90, p95, p99
    bound_ms: float
    inclusive: bool  # "<=" rather than "<"
    text: str  # as the user wrote it

    def holds(self, value_ms: float) -> bool:
        return value_ms <= self.bound_ms if self.inclusive else value_ms < self.bound_ms


def parse_slo(text: str) -> Slo:
    """Parse one `METRIC:STAT<VALUE[ms|s|us]`; a UserError names what is wrong."""
    found = _SLO.match(text)
    if not found:
        raise UserError(f"--slo {text!r}: expected METRIC:STAT<VALUE with a unit, {_EXAMPLE}")
    metric, stat, op, value, unit = (g.lower() for g in found.groups())
    metric = "e2e" if metric in ("e2el", "latency") else metric
    if metric not in METRICS:
        raise UserError(f"--slo {text!r}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    stat = "p50" if stat == "median" else stat
    if stat not in STATISTICS:
        raise UserError(f"--slo {text!r}: unknown statistic {stat!r}; expected one of {', '.join(STATISTICS)}")
    if unit not in _UNITS:
        raise UserError(f"--slo {text!r}: unknown or missing unit {unit!r}; expected ms, s or us ({_EXAMPLE})")
    bound = float(value) * _UNITS[unit]
    if bound <= 0:
        raise UserError(f"--slo {text!r}: the bound must be above zero")
    return Slo(metric=metric, statistic=stat, bound_ms=bound, inclusive=op == "<=", text=text.strip())


def parse_slos(texts: list[str] | None) -> list[Slo]:
    slos = [parse_slo(t) for t in texts or []]
    seen: dict[tuple[str, str], str] = {}
    for slo in slos:
        key = (slo.metric, slo.statistic)
        if key in seen:
            raise UserError(f"--slo {slo.text!r} repeats {seen[key]!r}; give each metric and statistic once")
        seen[key] = slo.text
    return slos

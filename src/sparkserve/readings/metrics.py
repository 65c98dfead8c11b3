"""One reader for an engine's Prometheus /metrics, with one definition of each reading.

Sample names come from the engine (`Engine.metric_aliases`: reading -> names, newest first), so a
server of an older or newer release, or another engine, reads the same way. Definitions:

- counters (`*_total`): summed over every label set (data-parallel engines, models, reasons);
- histograms (`_bucket`/`_sum`/`_count`): buckets summed per bound, sums and counts summed;
- gauges: counts of requests are summed over engines; fractions (`*_perc`, `*_rate`) are the mean
  over engines. KV-cache usage is therefore the share of all KV blocks in use when each
  data-parallel rank holds an equal pool (vLLM sizes every rank alike), not the busiest rank's share
  (the maximum) and not a sum that can pass 100 %;
- `cache_config_info`: the labels of its first sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Aliases = Mapping[str, Sequence[str]]
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def is_fraction(reading: str) -> bool:
    """Readings averaged over engines rather than summed."""
    return reading.endswith(("_perc", "_rate"))


@dataclass
class Metrics:
    """One read of /metrics at `at`; a reading the server does not expose is absent (None from the getters)."""

    at: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # cache_config_info labels
    model: str | None = None  # the model_name label, when the engine writes one
    families: int = 0  # metric families the server exposed (all of them, read or not)

    def counter(self, reading: str) -> float | None:
        return self.counters.get(reading)

    def gauge(self, reading: str) -> float | None:
        return self.gauges.get(reading)

    def mean(self, reading: str) -> float | None:
        """A histogram's mean since the server started (sum / count)."""
        total, count = self.sums.get(reading), self.counts.get(reading)
        return total / count if total is not None and count else None

    @property
    def kv_cache_tokens(self) -> int | None:
        """KV-cache capacity in tokens (cache_config_info: num_gpu_blocks x block_size)."""
        try:
            return int(self.info["num_gpu_blocks"]) * int(self.info["block_size"])
        except (KeyError, ValueError):
            return None


def _roles(aliases: Aliases) -> dict[str, tuple[str, str]]:
    """Exposed sample name -> (reading, role) for every alias; an earlier alias wins."""
    out: dict[str, tuple[str, str]] = {}
    for reading, names in aliases.items():
        for name in reversed(list(names)):  # newest first: let the first alias overwrite older spellings
            if reading == "cache_config_info":
                out[name] = (reading, "info")
            elif name.endswith("_total"):
                out[name] = (reading, "counter")
                for suffix in _HISTOGRAM_SUFFIXES:  # a histogram may carry the suffix too (iteration_tokens_total)
                    out[name + suffix] = (reading, suffix[1:])
            else:
                out[name] = (reading, "gauge")
                for suffix in _HISTOGRAM_SUFFIXES:
                    out[name + suffix] = (reading, suffix[1:])
    return out


def read_text(text: str, aliases: Aliases, at: float = 0.0) -> Metrics:
    """Prometheus text -> Metrics. Only the lines that `aliases` name go through prometheus_client's
    parser (it is pure Python and vLLM writes about 600 lines, mostly histograms)."""
    from prometheus_client.parser import text_string_to_metric_families

    roles = _roles(aliases)
    families = set()
    kept = []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                families.add(parts[2])
            continue
        end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=len(line))
        if line[:end] in roles:
            kept.append(line)
    out = Metrics(at=at, families=len(families))
    exposed: dict[str, list[tuple[str, str, dict[str, str], float]]] = {}  # alias -> (reading, role, labels, value)
    for family in text_string_to_metric_families("\n".join(kept) + "\n"):
        for sample in family.samples:
            found = roles.get(sample.name)
            if found is None:
                continue
            reading, role = found
            base = sample.name.removesuffix("_" + role) if role in ("bucket", "sum", "count") else sample.name
            exposed.setdefault(base, []).append((reading, role, dict(sample.labels), float(sample.value)))
    for reading, names in aliases.items():
        # Two releases' names for one reading may both be exposed: read only the newest.
        name = next((n for n in names if n in exposed), None)
        if name is None:
            continue
        gauges = 0
        for _, role, labels, value in exposed[name]:
            if out.model is None and "model_name" in labels:
                out.model = labels["model_name"]
            if role == "counter":
                out.counters[reading] = out.counters.get(reading, 0.0) + value
            elif role == "gauge":
                out.gauges[reading] = out.gauges.get(reading, 0.0) + value
                gauges += 1
            elif role == "bucket":
                bound = float(labels.get("le", "inf"))
                per = out.buckets.setdefault(reading, {})
                per[bound] = per.get(bound, 0.0) + value
            elif role == "sum":
                out.sums[reading] = out.sums.get(reading, 0.0) + value
            elif role == "count":
                out.counts[reading] = out.counts.get(reading, 0.0) + value
            elif role == "info" and not out.info:
                out.info = {k: v for k, v in labels.items() if k not in ("engine", "model_name")}
        if gauges and is_fraction(reading):
            out.gauges[reading] /= gauges
    return out


def aliases_for(engine: str) -> Aliases:
    """The engine's metric names; for a server of an unidentified engine, every registered engine's."""
    from sparkserve.engines import engines, find_engine

    found = find_engine(engine)
    if found is not None and found.metric_aliases:
        return found.metric_aliases
    merged: dict[str, list[str]] = {}
    for candidate in engines():
        for reading, names in candidate.metric_aliases.items():
            merged.setdefault(reading, []).extend(n for n in names if n not in merged.get(reading, []))
    return merged

"""What `doctor --live` reads from a serving engine, and what an engine concludes from a window of reads.

Engine-neutral data: each engine module supplies a `LiveProbe` (how to recognise and read its server,
and what its readings mean in its own flags); `sparkserve.doctor.live` does the sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class LiveSample:
    """One read at `at` (time.monotonic()): gauges, counters and histogram sums/counts by reading name."""

    at: float
    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # what the server says about itself (cache config, models)


@dataclass(frozen=True)
class LiveFinding:
    """What limits the service, in the engine's own flags, with the numbers that show it."""

    cause_id: str
    summary: str
    fix: str
    evidence: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"cause_id": self.cause_id, "summary": self.summary, "fix": self.fix, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Window:
    """Reads over a sampling window plus the settings the server runs with and the plan's numbers."""

    samples: tuple[LiveSample, ...]
    settings: Mapping[str, object] = field(default_factory=dict)  # e.g. {"max_num_seqs": "1"} from its command line
    plan: Mapping[str, float] = field(default_factory=dict)  # e.g. {"decode_tps": 41.0}

    @property
    def seconds(self) -> float:
        return self.samples[-1].at - self.samples[0].at if len(self.samples) > 1 else 0.0

    def series(self, name: str) -> list[float]:
        return [s.values[name] for s in self.samples if name in s.values]

    def mean(self, name: str) -> float | None:
        values = self.series(name)
        return sum(values) / len(values) if values else None

    def peak(self, name: str) -> float | None:
        values = self.series(name)
        return max(values) if values else None

    def share(self, name: str, test: Callable[[float], bool]) -> float | None:
        """Fraction of reads whose value passes `test`."""
        values = self.series(name)
        return sum(1 for v in values if test(v)) / len(values) if values else None

    def delta(self, name: str) -> float | None:
        """Growth of a counter over the window; None when unread or reset (a restart)."""
        values = self.series(name)
        if len(values) < 2 or values[-1] < values[0]:
            return None
        return values[-1] - values[0]

    def per_event(self, total: str, count: str) -> float | None:
        """Mean of a histogram over the window: growth of its sum over growth of its count."""
        s, n = self.delta(total), self.delta(count)
        return s / n if s is not None and n else None

    def info(self, key: str) -> str | None:
        for sample in reversed(self.samples):
            if key in sample.info:
                return sample.info[key]
        return None


class LiveProbe(Protocol):
    """How one engine is read while it serves, and how its readings are judged."""

    def recognises(self, client: httpx.Client, base_url: str) -> bool:
        """Whether the server at `base_url` is this engine."""

    def read(self, client: httpx.Client, base_url: str, at: float) -> LiveSample:
        """One read; raises httpx.HTTPError when the server does not answer."""

    def settings_from_argv(self, argv: list[str]) -> dict[str, object]:
        """The server's flags from its command line (a local native server)."""

    def diagnose(self, window: Window) -> list[LiveFinding]:
        """What limits the service, most direct evidence first; [] when nothing does."""

    def close(self) -> None:
        """Stops whatever the reads started (a probe request still waiting); nothing is left running."""

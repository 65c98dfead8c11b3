"""`doctor --live`: read a serving engine for a window while it takes its real traffic, then ask the
engine what limits it.

Sampling is engine-neutral; which server this is, what to read and what the readings mean come
from the engine's `LiveProbe` (engines/). A local native server's flags are read from its own
command line; a stack supplies its args and the plan's numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from sparkserve.engines.live import LiveFinding, LiveProbe, LiveSample, Window
from sparkserve.errors import UserError

INTERVAL_S = 1.0
"""Reads per second: gauges such as requests waiting are only visible while they last."""


@dataclass(frozen=True)
class LiveResult:
    url: str
    window: Window
    findings: list[LiveFinding]

    def to_dict(self) -> dict[str, object]:
        return {"findings": [f.to_dict() for f in self.findings],
                "live": {"url": self.url, "window_s": round(self.window.seconds, 1), "reads": len(self.window.samples),
                         "settings": {k: v for k, v in self.window.settings.items()
                                      if isinstance(v, (str, int, float))},
                         "plan": dict(self.window.plan)}}


def pick_probe(client: httpx.Client, url: str, probes: Sequence[LiveProbe]) -> LiveProbe:
    """The first engine probe that recognises the server; a one-line error when none answers."""
    for probe in probes:
        if probe.recognises(client, url):
            return probe
    raise UserError(f"{url}: no engine sparkserve reads answers there (is the service up? `sparkserve status`)")


def local_settings(url: str, probe: LiveProbe) -> dict[str, object]:
    """The flags of a server on this machine, from its command line; {} when it is elsewhere or unreadable."""
    from sparkserve.readings.proc import listening_pid

    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
        return {}
    pid = listening_pid(parts.port)
    if pid is None:
        return {}
    try:
        raw = open(f"/proc/{pid}/cmdline", "rb").read()  # noqa: SIM115 - one read of a tiny proc file
    except OSError:
        return {}
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return probe.settings_from_argv(argv)


def _read(client: httpx.Client, url: str, probe: LiveProbe, now: float) -> LiveSample:
    """One read, tried twice on a dropped connection: a busy server may close a kept-alive one as it is reused."""
    try:
        return probe.read(client, url, now)
    except httpx.TransportError:
        return probe.read(client, url, now)


def sample(client: httpx.Client, url: str, probe: LiveProbe, window_s: float, *,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
           interval_s: float = INTERVAL_S) -> list[LiveSample]:
    """Reads from now until `window_s` has passed (at least two)."""
    start = clock()
    samples: list[LiveSample] = []
    while True:
        now = clock()
        try:
            samples.append(_read(client, url, probe, now))
        except httpx.HTTPError as exc:
            raise UserError(f"{url} stopped answering during the window ({type(exc).__name__}): "
                            "is the service still up? `sparkserve status`") from exc
        if now - start >= window_s and len(samples) >= 2:
            return samples
        sleep(max(0.0, min(interval_s, start + window_s - clock())))


def diagnose_live(url: str, probes: Sequence[LiveProbe], window_s: float, *,
                  settings: Mapping[str, object] | None = None, plan: Mapping[str, float] | None = None,
                  client: httpx.Client | None = None) -> LiveResult:
    """Sample the server at `url` for `window_s` seconds and return what limits it."""
    if window_s <= 0:
        raise UserError(f"--window must be a positive number of seconds, got {window_s:g}")
    url = url.rstrip("/")
    own = client or httpx.Client(timeout=10.0, trust_env=False)
    try:
        probe = pick_probe(own, url, probes)
        found = {**(settings or {}), **local_settings(url, probe)}  # what the server runs with wins
        try:
            window = Window(tuple(sample(own, url, probe, window_s)), found, dict(plan or {}))
            findings = probe.diagnose(window)
        finally:
            probe.close()
    finally:
        if client is None:
            own.close()
    return LiveResult(url, window, findings)

"""`sparkserve monitor`: a live terminal view (textual) of services, GPUs and memory with short history.

A background thread polls; the UI only draws. A service that stops or restarts shows as
down and comes back on a later poll: the view never exits on a failed read. `q`, Ctrl-C or
Ctrl-Q quit; the polling thread is told to stop and joined before the app returns.
"""

from __future__ import annotations

import asyncio
import functools
import threading

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, Label, Sparkline, Static

from sparkserve.monitor.sampler import Sampler, Snapshot
from sparkserve.monitor.view import fmt_gib, fmt_num, fmt_pct, status_view

SPARKS = (
    ("tps", "generation tokens/s (all services)"),
    ("kv", "KV cache usage (highest)"),
    ("queue", "requests running + waiting"),
    ("memory", "memory in use"),
)


class MonitorApp(App[None]):
    """Polls `sampler` every `interval_s` seconds in a worker thread and redraws."""

    TITLE = "sparkserve monitor"
    CSS = """
    #body { height: auto; }
    .spark-label { color: $text-muted; }
    Sparkline { height: 2; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, sampler: Sampler, interval_s: float = 2.0):
        super().__init__()
        self.sampler = sampler
        self.interval_s = interval_s
        self.polls = 0
        self.last: Snapshot | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="sparkserve-monitor-poll", daemon=True)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("reading…", id="status")
            for key, label in SPARKS:
                yield Label(label, id=f"label-{key}", classes="spark-label")
                yield Sparkline([], id=f"spark-{key}")
        yield Footer()

    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def on_unmount(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)  # at most one poll in flight (short HTTP timeouts)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = self.sampler.poll()
            except Exception as exc:  # noqa: BLE001 - one failed round must not end the live view
                snapshot, note = None, f"reading failed: {type(exc).__name__}: {exc}"
            if self._stop.is_set():
                break
            loop = self._loop
            if loop is None:
                break
            try:  # never blocks on the UI: call_from_thread would deadlock with on_unmount's join
                if snapshot is not None:
                    loop.call_soon_threadsafe(self._show, snapshot)
                else:
                    loop.call_soon_threadsafe(functools.partial(self.notify, note, severity="warning"))
            except RuntimeError:  # the event loop is closed
                break
            self._stop.wait(self.interval_s)

    def _show(self, snapshot: Snapshot) -> None:
        if self._stop.is_set():
            return
        self.polls += 1
        self.last = snapshot
        self.query_one("#status", Static).update(status_view(snapshot))
        series = self._series()
        now = {
            "tps": fmt_num(series["tps"][-1] if series["tps"] else None),
            "kv": fmt_pct(series["kv"][-1] if series["kv"] else None),
            "queue": fmt_num(series["queue"][-1] if series["queue"] else None, 0),
            "memory": fmt_gib(series["memory"][-1] if series["memory"] else None),
        }
        for key, label in SPARKS:
            self.query_one(f"#spark-{key}", Sparkline).data = series[key] or [0.0]
            self.query_one(f"#label-{key}", Label).update(f"{label}: {now[key]}")

    def _series(self) -> dict[str, list[float]]:
        """Totals across services per poll; a poll with no reading counts as 0 so the line keeps its time axis."""
        history = list(self.sampler.history.values())
        length = max((len(s["generation_tps"]) for s in history), default=0)

        def total(key: str, combine) -> list[float]:
            out = []
            for back in range(length, 0, -1):  # series are aligned at their newest point
                values = [s[key][-back] for s in history if len(s[key]) >= back and s[key][-back] is not None]
                out.append(combine(values) if values else 0.0)
            return out

        memory = [v or 0.0 for v in self.sampler.memory_history]
        return {"tps": total("generation_tps", sum), "kv": total("kv_cache_usage", max),
                "queue": total("queue", sum), "memory": memory}

"""The terminal view: a live line per load point while it runs, then the result tables."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from rich.live import Live

    from sparkserve.bench.load import PointRun
    from sparkserve.bench.outcome import Outcome
    from sparkserve.bench.schema import BenchResult, RunResult

LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))


class LiveProgress:
    """Counts outcomes as they come (cheap: no rendering on the hot path; rich refreshes twice a second)."""

    def __init__(self, console: Console, total: int | None, duration_s: float | None) -> None:
        self.console = console
        self.total = total
        self.duration_s = duration_s
        self.live: Live | None = None
        self.run: PointRun | None = None
        self.ok = self.failed = self.tokens = 0
        self.started = time.perf_counter()

    def __call__(self, event: str, run: PointRun | None, outcome: Outcome | None) -> None:
        if event == "start":
            self.run, self.ok, self.failed, self.tokens = run, 0, 0, 0
            self.started = time.perf_counter()
            if self.console.is_terminal:
                from rich.live import Live

                self.live = Live(self, console=self.console, refresh_per_second=2, transient=True)
                self.live.start()
        elif event == "outcome" and outcome is not None:
            if outcome.ok:
                self.ok += 1
                self.tokens += outcome.tokens
            else:
                self.failed += 1
        elif event == "end":
            self._stop()
            if run is not None:
                self.console.print(f"  {run.point.label}: {self.ok} completed, {self.failed} failed "
                                   f"in {run.duration_s:.1f} s ({run.stopped_reason})")
        elif event == "interrupt":
            self.console.print("[yellow]interrupted: finishing the result with what completed[/]")

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich__(self) -> str:
        elapsed = time.perf_counter() - self.started
        label = self.run.point.label if self.run else ""
        if self.total:
            done = f"{self.ok + self.failed}/{self.total}"
        else:
            done = f"{self.ok + self.failed} in {elapsed:.0f}/{self.duration_s or 0:.0f} s"
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        in_flight = self.run.in_flight if self.run else 0
        return (f"[bold]{label}[/]  {done} requests  [green]{self.ok} ok[/]  [red]{self.failed} failed[/]  "
                f"{in_flight} in flight  {rate:.1f} output tok/s")


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def run_table(run: RunResult) -> Table:
    s = run.summary
    table = Table(title=f"{run.load.label}: {s.completed} completed, {s.failed} failed, {s.duration_s:.1f} s",
                  title_justify="left")
    table.add_column("ms")
    for col in ("mean", "p50", "p90", "p95", "p99"):
        table.add_column(col, justify="right")
    for name, key in LATENCIES:
        d = getattr(s, key)
        table.add_row(name, *(_num(getattr(d, col)) for col in ("mean", "p50", "p90", "p95", "p99")))
    return table


def _server_line(srv) -> str | None:
    """What the server and host reported, in one line (only what was available)."""
    parts = []
    if srv.generation_tokens is not None:
        parts.append(f"server generated {srv.generation_tokens:.0f} tokens")
    if srv.prefix_cache_hit_rate is not None:
        parts.append(f"prefix-cache hits {100 * srv.prefix_cache_hit_rate:.0f} %")
    if srv.kv_cache_usage_peak is not None:
        parts.append(f"KV peak {100 * srv.kv_cache_usage_peak:.1f} %")
    if srv.preemptions:
        parts.append(f"preemptions {srv.preemptions:.0f}")
    if srv.queue_time_ms_mean is not None:
        parts.append(f"queue {srv.queue_time_ms_mean:.1f} ms mean")
    if srv.ollama_eval_tps is not None:
        parts.append(f"Ollama eval {srv.ollama_eval_tps:.1f} tok/s")
    if srv.mem_available_gib_min is not None:
        parts.append(f"MemAvailable min {srv.mem_available_gib_min:.1f} GiB")
    if srv.gpu_util_pct_peak is not None:
        parts.append(f"GPU peak {srv.gpu_util_pct_peak:.0f} %")
    return "  " + ", ".join(parts) if parts else None


def _run_lines(run: RunResult) -> list[str]:
    s = run.summary
    lines = [f"  output {_num(s.output_tps)} tok/s, total {_num(s.total_tps)} tok/s, "
             f"{_num(s.request_rate, 2)} req/s, decode {_num(s.decode_tps)} tok/s per request, "
             f"mean concurrency {_num(s.mean_concurrency, 2)}"]
    if s.goodput_rps is not None:
        lines.append(f"  goodput {_num(s.goodput_rps, 2)} req/s "
                     f"({s.good_requests}/{s.completed} requests meet every SLO)")
        for slo in s.slo:
            mark = "[green]met[/]" if slo.attained else "[red]missed[/]"
            lines.append(f"    {slo.slo}: {_num(slo.observed_ms)} ms {mark} ({slo.requests_meeting} requests within)")
    if s.errors:
        kinds = ", ".join(f"{k} {v}" for k, v in s.errors.items())
        codes = ", ".join(f"{k}: {v}" for k, v in s.http_statuses.items())
        lines.append(f"  [red]errors[/]: {kinds}" + (f" (HTTP {codes})" if codes else ""))
    if s.short_outputs:
        lines.append(f"  [yellow]{s.short_outputs} request(s) returned fewer tokens than asked for[/]")
    server = _server_line(run.server)
    if server:
        lines.append(server)
    lines.append(f"  plan: {run.plan.line or run.plan.reason}")
    if run.stopped_reason in ("interrupted", "server_died"):
        cancelled = f", {run.cancelled} request(s) cancelled" if run.cancelled else ""
        lines.append(f"  [yellow]stopped: {run.stopped_reason.replace('_', ' ')}[/]{cancelled}")
    return lines


def print_result(result: BenchResult, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    for run in result.runs:
        console.print(run_table(run))
        for line in _run_lines(run):
            console.print(line)
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {warning}")

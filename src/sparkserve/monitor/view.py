"""Show a Snapshot: rich tables for `status` and `monitor --once`, and one JSON object for scripts.

Every missing reading prints as "n/a" (JSON: null): no GPU, no NVML, a GB10 that will not
report memory, a service that is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sparkserve.monitor.sampler import ServiceReading, Snapshot
from sparkserve.units import GIB

NA = "n/a"
_BLOCKS = "▁▂▃▄▅▆▇█"


def fmt_gib(value: float | int | None) -> str:
    return NA if value is None else f"{value / GIB:.1f} GiB"


def fmt_num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return NA if value is None else f"{value:.{digits}f}{unit}"


def fmt_pct(fraction: float | None) -> str:
    if fraction is None:
        return NA
    return f"{fraction * 100:.1f}%" if fraction < 0.1 else f"{fraction * 100:.0f}%"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    if seconds < 0:
        return "expired"
    if seconds > 10 * 365 * 86400:
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def sparkline(values: Iterable[float | None], width: int = 30) -> str:
    """Unicode blocks scaled to the window's maximum; a gap (n/a) is a space."""
    points = list(values)[-width:]
    known = [v for v in points if v is not None]
    top = max(known, default=0.0)
    out = []
    for v in points:
        if v is None:
            out.append(" ")
        else:
            out.append(_BLOCKS[min(len(_BLOCKS) - 1, int(v / top * (len(_BLOCKS) - 1)))] if top > 0 else _BLOCKS[0])
    return "".join(out)


def runtime_text(r: ServiceReading) -> str:
    """The runtime's own view: container state and health, or the native process."""
    row, t = r.target.row, r.target
    state = str(row.get("state") or "")
    health = str(row.get("health") or "")
    if t.runtime == "compose":
        return f"compose {state or NA}" + (f" ({health})" if health else "")
    recorded = row.get("pid")
    if state == "running" and recorded:
        return f"native, pid {recorded}"
    if state == "crashed":
        return f"native, crashed (pid {recorded} gone)"
    if t.pid and state:  # the runtime has no live record: the process found on its port
        return f"native ({state}), pid {t.pid} on its port"
    if t.pid:
        return f"native, pid {t.pid}"
    return f"native, {state or 'no process'}"


def _queue(r: ServiceReading) -> str:
    running, waiting = r.gauge("num_requests_running"), r.gauge("num_requests_waiting")
    if running is None and waiting is None:
        return NA
    return f"{fmt_num(running, 0)}/{fmt_num(waiting, 0)}"


def _held(r: ServiceReading) -> str:
    parts = []
    if r.rss_bytes is not None:
        parts.append(f"RSS {fmt_gib(r.rss_bytes)}")
    if r.gpu_memory_bytes is not None:
        parts.append(f"GPU {fmt_gib(r.gpu_memory_bytes)}")
    return ", ".join(parts) or NA


def services_table(snapshot: Snapshot) -> Table:
    table = Table("service", "health", "model", "runtime", "uptime", "run/wait", "KV cache", "gen tok/s", "holds",
                  title="services", title_justify="left")
    for r in snapshot.services:
        style = {"healthy": "green", "unhealthy": "yellow"}.get(r.health, "red")
        health = Text(r.health, style=style)
        if r.error and r.health != "healthy":
            health.append(f" ({r.error})", style="dim")
        model = r.model or r.target.row.get("model")  # down: what the stack serves it as
        table.add_row(r.name, health, str(model or NA), runtime_text(r), fmt_duration(r.uptime_s), _queue(r),
                      fmt_pct(r.gauge("kv_cache_usage_perc")), fmt_num(r.rates.generation_tps), _held(r))
    if not snapshot.services:
        table.add_row("(no services)", *[""] * 8)
    return table


def ollama_table(snapshot: Snapshot) -> Table | None:
    rows = [(r, m) for r in snapshot.services if r.ollama for m in r.ollama.models]
    if not any(r.ollama for r in snapshot.services):
        return None
    table = Table("service", "model", "size", "on GPU", "unloads in", title="Ollama loaded models",
                  title_justify="left")
    for r, m in rows:
        table.add_row(r.name, m.name, fmt_gib(m.size_bytes), fmt_gib(m.size_vram_bytes), fmt_duration(m.expires_in_s))
    for r in snapshot.services:
        if r.ollama and not r.ollama.models:
            table.add_row(r.name, "(none loaded)" if r.ollama.up else f"({r.ollama.error or 'down'})", "", "", "")
    return table


def gpu_table(snapshot: Snapshot) -> RenderableType:
    d = snapshot.gpus
    if not d.gpus:
        reason = d.notes[0] if d.notes else "no GPU"
        return Text(f"GPU: {NA} ({reason})", style="dim")
    owners = {pid: r.name for r in snapshot.services for pid in r.pids}
    table = Table(
        "GPU",
        "util",
        "temp",
        "power",
        "memory",
        "processes",
        title=f"GPUs (driver {d.driver_version or NA}, CUDA {d.cuda_driver_version or NA})",
        title_justify="left",
    )
    for g in d.gpus:
        if g.unified:
            memory = "unified (see memory)"
        elif g.memory_total_gib is not None:
            memory = f"{fmt_num(g.memory_used_gib)}/{g.memory_total_gib:.1f} GiB"
        else:
            memory = NA
        processes = ", ".join(f"{owners.get(p.pid, p.pid)}: {fmt_gib(p.used_memory_bytes)}" for p in g.processes) or NA
        power = (
            NA if g.power_w is None else f"{g.power_w:.0f} W" + (f"/{g.power_limit_w:.0f}" if g.power_limit_w else "")
        )
        table.add_row(
            f"{g.index}: {g.name}",
            fmt_num(g.utilization_pct, 0, "%"),
            fmt_num(g.temperature_c, 0, " C"),
            power,
            memory,
            processes,
        )
    return table


def memory_text(snapshot: Snapshot) -> Text:
    m = snapshot.memory
    unified = any(g.unified for g in snapshot.gpus.gpus)
    label = "unified memory" if unified else "host memory"
    text = Text(
        f"{label}: {fmt_gib(m.available)} available of {fmt_gib(m.total)}, "
        f"page cache {fmt_gib(m.page_cache)}, free {fmt_gib(m.free)}"
    )
    held = [
        f"{r.name} {_held(r)}" for r in snapshot.services if r.rss_bytes is not None or r.gpu_memory_bytes is not None
    ]
    if held:
        text.append("; held: " + "; ".join(held))
    return text


def status_view(snapshot: Snapshot) -> Group:
    parts: list[RenderableType] = [services_table(snapshot)]
    ollama = ollama_table(snapshot)
    if ollama is not None:
        parts.append(ollama)
    parts += [gpu_table(snapshot), memory_text(snapshot)]
    return Group(*parts)


def history_view(names: Sequence[str], history: dict, memory_history: Iterable[float | None], width: int = 40) -> Table:
    """Sparklines of the sampler's history: tokens/s, KV usage, queue per service, and memory in use."""
    table = Table("series", "history", "now", title="history", title_justify="left")
    for name in names:
        series = history.get(name, {})
        for key, label, fmt in (
            ("generation_tps", "gen tok/s", lambda v: fmt_num(v)),
            ("kv_cache_usage", "KV cache", fmt_pct),
            ("queue", "queue", lambda v: fmt_num(v, 0)),
        ):
            values = list(series.get(key, []))
            if any(v is not None for v in values):
                table.add_row(f"{name} {label}", sparkline(values, width), fmt(values[-1] if values else None))
    mem = list(memory_history)
    table.add_row("memory in use", sparkline(mem, width), fmt_gib(mem[-1] if mem else None))
    return table


def snapshot_dict(snapshot: Snapshot) -> dict:
    """The JSON for `status --json`: the runtime's rows with readings added, then Ollama, GPUs, memory."""
    owners = {pid: r.name for r in snapshot.services for pid in r.pids}
    services = []
    models = []
    for r in snapshot.services:
        entry = dict(r.target.row)
        entry.update(
            {
                "service": r.name,
                "engine": r.target.engine,
                "runtime": r.target.runtime,
                "url": r.target.url,
                "pid": r.target.pid,
                "container_id": r.target.container_id,
                "api_status": r.health,
                "error": r.error,
                "model": r.model or entry.get("model"),
                "uptime_s": _round(r.uptime_s) if r.uptime_s is not None else entry.get("uptime_s"),
                "requests_running": r.gauge("num_requests_running"),
                "requests_waiting": r.gauge("num_requests_waiting"),
                "requests_swapped": r.gauge("num_requests_swapped"),
                "kv_cache_usage": r.gauge("kv_cache_usage_perc"),
                "kv_cache_tokens": r.vllm.kv_cache_tokens if r.vllm else None,
                "interval_s": _round(r.rates.interval_s),
                "generation_tokens_per_s": _round(r.rates.generation_tps),
                "prompt_tokens_per_s": _round(r.rates.prompt_tps),
                "prefix_cache_hit_rate": _round(r.rates.prefix_cache_hit_rate, 4),
                "preemptions_total": r.vllm.counters.get("num_preemptions_total") if r.vllm else None,
                "preemptions_interval": r.rates.preemptions,
                "rss_bytes": r.rss_bytes,
                "gpu_memory_bytes": r.gpu_memory_bytes,
            }
        )
        if r.ollama is not None:
            entry["ollama_version"] = r.ollama.version
            for m in r.ollama.models:
                models.append(
                    {
                        "service": r.name,
                        "name": m.name,
                        "size_bytes": m.size_bytes,
                        "size_vram_bytes": m.size_vram_bytes,
                        "expires_at": m.expires_at,
                        "expires_in_s": _round(m.expires_in_s),
                        "context_length": m.context_length,
                    }
                )
        services.append(entry)
    d = snapshot.gpus
    gpus = [
        {
            "index": g.index,
            "name": g.name,
            "unified": g.unified,
            "utilization_pct": g.utilization_pct,
            "temperature_c": g.temperature_c,
            "power_w": g.power_w,
            "power_limit_w": g.power_limit_w,
            "memory_total_gib": g.memory_total_gib,
            "memory_used_gib": g.memory_used_gib,
            "processes": [
                {"pid": p.pid, "used_memory_bytes": p.used_memory_bytes, "service": owners.get(p.pid)}
                for p in g.processes
            ],
        }
        for g in d.gpus
    ]
    host = snapshot.memory
    return {
        "taken_at": round(snapshot.taken_at, 3),
        "services": services,
        "ollama_models": models,
        "gpu": {
            "nvml": bool(d.gpus) or d.driver_version is not None,
            "driver_version": d.driver_version,
            "cuda_version": d.cuda_driver_version,
            "devices": gpus,
            "notes": list(d.notes),
        },
        "memory": {
            "unified": any(g.unified for g in d.gpus),
            "total_bytes": host.total,
            "available_bytes": host.available,
            "free_bytes": host.free,
            "page_cache_bytes": host.page_cache,
            "services": {
                r.name: {"rss_bytes": r.rss_bytes, "gpu_memory_bytes": r.gpu_memory_bytes} for r in snapshot.services
            },
        },
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)

"""One self-contained HTML report: tables and inline SVG plots drawn here, nothing fetched.

No script, no stylesheet, no font and no image comes from the network: the file opens offline
and can be mailed or archived as it is.
"""

from __future__ import annotations

import math
from html import escape

from sparkserve.bench.schema import BenchResult, RunResult

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
# The legend sits in its own band between the title and the plot, so it never covers data.
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 640, 280, 64, 40, 46, 16
LEGEND_Y = 34
CHAR_W = 6.2  # mean advance of 11px sans-serif, to lay legend entries side by side

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.muted{color:#777}.warn{color:#b35900}.plan{font-weight:600}
svg{background:#fafafa;border:1px solid #eee;margin:6px 0}svg text{font:11px sans-serif;fill:#333}
"""


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"


Series = list[tuple[str, list[tuple[float, float]]]]


def chart(title: str, series: Series, xlabel: str, ylabel: str, scatter: bool = False,
          markers: bool = False, dashed: tuple[str, ...] = (), labels: dict[str, list[str]] | None = None) -> str:
    """An SVG line (or scatter) chart of named (x, y) series; empty series draw an empty frame.

    `markers` adds a dot at every point of a line; series named in `dashed` draw dashed (predictions);
    `labels` names each point of a series (same order as its points).
    """
    points = [p for _, pts in series for p in pts if all(map(math.isfinite, p))]
    out = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f'<text x="{PAD_L}" y="16" font-weight="bold">{escape(title)}</text>']
    if not points:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(out)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(p[1] for p in points) * 1.05 or 1.0
    x1 = x1 if x1 > x0 else x0 + 1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - y / y1 * ph

    for t in _ticks(0, y1):
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{PAD_L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{PAD_T + ph}" y2="{PAD_T + ph}" stroke="#999"/>'
               f'<text x="{PAD_L + pw / 2}" y="{H - 6}" text-anchor="middle">{escape(xlabel)}</text>'
               f'<text x="14" y="{PAD_T + ph / 2}" transform="rotate(-90 14 {PAD_T + ph / 2})" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    legend_x = float(PAD_L)
    for i, (name, raw) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [p for p in raw if all(map(math.isfinite, p))]
        if scatter:
            out.extend(f'<circle class="data" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}" '
                       'fill-opacity="0.6"/>' for x, y in pts)
        elif pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            dash = ' stroke-dasharray="5 4"' if name in dashed else ""
            out.append(
                f'<polyline class="data" points="{path}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>'
            )
            if markers or len(pts) == 1:
                out.extend(
                    f'<circle class="data" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>' for x, y in pts
                )
        for text, (x, y) in zip((labels or {}).get(name, []), raw, strict=False):
            if math.isfinite(x) and math.isfinite(y):
                right = sx(x) > W - PAD_R - CHAR_W * len(text) - 8  # near the right edge: label on the left
                anchor = f'x="{sx(x) - 5:.1f}" text-anchor="end"' if right else f'x="{sx(x) + 5:.1f}"'
                out.append(f'<text {anchor} y="{sy(y) - 5:.1f}" fill="{color}">{escape(text)}</text>')
        out.append(
            f'<rect class="legend" x="{legend_x:.1f}" y="{LEGEND_Y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text class="legend" x="{legend_x + 14:.1f}" y="{LEGEND_Y}">{escape(name)}</text>'
        )
        legend_x += 14 + CHAR_W * len(name) + 18
    out.append("</svg>")
    return "".join(out)


def _cdf(values: list[float]) -> list[tuple[float, float]]:
    ordered = sorted(values)
    n = len(ordered)
    return [(v, 100.0 * (i + 1) / n) for i, v in enumerate(ordered)]


def _throughput(run: RunResult) -> list[tuple[float, float]]:
    """Output tokens per second from every chunk's arrival, in 1-second buckets (a tenth of the run
    when it lasted under 10 s, so a short run still draws a line)."""
    arrivals = [(r.start_s + ms / 1000, n) for r in run.requests if r.ok
                for ms, n in zip(r.chunk_ms, r.chunk_tokens, strict=False)]
    if not arrivals:
        return []
    span = max(t for t, _ in arrivals)
    width = 1.0 if span >= 10 else max(span / 10, 0.01)
    buckets: dict[int, int] = {}
    for t, n in arrivals:
        buckets[int(t / width)] = buckets.get(int(t / width), 0) + n
    return [((b + 0.5) * width, buckets.get(b, 0) / width) for b in range(0, max(buckets) + 1)]


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


STATS = ("mean", "p50", "p90", "p95", "p99")
LATENCIES = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "e2e_ms"))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """An HTML table of already formatted cells (escaped here)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_html(run: RunResult) -> list[str]:
    s = run.summary
    latency_rows = [(name, *(_num(getattr(getattr(s, key), c)) for c in STATS)) for name, key in LATENCIES]
    parts = [
        f"<h2>{escape(run.load.label)}</h2>",
        f"<p>{s.completed} completed, {s.failed} failed in {s.duration_s:.1f} s ({escape(run.stopped_reason)}); "
        f"output {_num(s.output_tps)} tok/s, total {_num(s.total_tps)} tok/s, {_num(s.request_rate, 2)} req/s, "
        f"decode {_num(s.decode_tps)} tok/s per request, mean concurrency {_num(s.mean_concurrency, 2)}</p>",
        f'<p class="plan">plan: {escape(run.plan.line or run.plan.reason or "no plan")}</p>',
        _table(("ms", *STATS), latency_rows),
    ]
    if s.goodput_rps is not None:
        parts.append(
            f"<p>goodput {_num(s.goodput_rps, 2)} req/s ({s.good_requests}/{s.completed} requests meet every SLO)</p>"
        )
        parts.append(
            _table(
                ("SLO", "observed ms", "", "requests within"),
                [
                    (x.slo, _num(x.observed_ms), "met" if x.attained else "missed", str(x.requests_meeting))
                    for x in s.slo
                ],
            )
        )
    if s.errors:
        parts.append('<p class="warn">errors: ' + escape(", ".join(f"{k} {v}" for k, v in s.errors.items())) + "</p>")
    return parts


def _charts_html(run: RunResult) -> list[str]:
    ok = [r for r in run.requests if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tpot = [r.tpot_ms for r in ok if r.tpot_ms is not None]
    parts = [
        chart("Output tokens per second", [("output tok/s", _throughput(run))], "seconds into the run", "tokens/s"),
        chart(
            "Latency by request start",
            [("TTFT", [(r.start_s, r.ttft_ms or 0) for r in ok]), ("E2E", [(r.start_s, r.e2e_ms or 0) for r in ok])],
            "request sent (s)",
            "ms",
            scatter=True,
        ),
        chart("Latency CDF", [("TTFT", _cdf(ttft)), ("TPOT", _cdf(tpot))], "ms", "% of requests"),
    ]
    readings = run.server.readings
    if any(r.kv_cache_usage is not None or r.running is not None for r in readings):
        series = [
            ("KV cache %", [(r.t_s, 100 * r.kv_cache_usage) for r in readings if r.kv_cache_usage is not None]),
            ("running", [(r.t_s, r.running) for r in readings if r.running is not None]),
            ("waiting", [(r.t_s, r.waiting) for r in readings if r.waiting is not None]),
        ]
        parts.append(chart("Server", series, "seconds into the run", "value"))
    return parts


# ServerStats field -> (label, unit, scale): what the server table shows instead of the field name.
SERVER_ROWS: dict[str, tuple[str, str, float]] = {
    "source": ("readings from", "", 1),
    "generation_tokens": ("tokens generated (server count)", "", 1),
    "prompt_tokens": ("prompt tokens (server count)", "", 1),
    "prefix_cache_queries": ("prefix cache lookups", "tokens", 1),
    "prefix_cache_hits": ("prefix cache hits", "tokens", 1),
    "prefix_cache_hit_rate": ("prefix cache hit rate", "%", 100),
    "preemptions": ("preemptions", "", 1),
    "kv_cache_usage_peak": ("KV cache usage, peak", "%", 100),
    "running_peak": ("requests running, peak", "", 1),
    "waiting_peak": ("requests waiting, peak", "", 1),
    "queue_time_ms_mean": ("queue time, mean", "ms", 1),
    "queue_time_ms_p90_at_most": ("queue time p90, at most (histogram bucket)", "ms", 1),
    "ollama_eval_tps": ("Ollama decode speed", "tok/s", 1),
    "ollama_prompt_eval_tps": ("Ollama prompt speed", "tok/s", 1),
    "ollama_load_ms_total": ("Ollama model load", "ms", 1),
    "mem_available_gib_min": ("memory available, lowest", "GiB", 1),
    "gpu_util_pct_peak": ("GPU utilisation, peak", "%", 1),
    "gpu_mem_used_gib_peak": ("GPU memory used, peak", "GiB", 1),
    "gpu_power_w_peak": ("GPU power, peak", "W", 1),
}


def _server_rows(run: RunResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for key, value in run.server.model_dump(exclude={"readings"}).items():
        if value is None:
            continue
        label, unit, scale = SERVER_ROWS.get(key, (key.replace("_", " "), "", 1))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value * scale
            text = f"{number:,.0f}" if float(number).is_integer() else f"{number:,.1f}"
            if key == "queue_time_ms_p90_at_most":
                text = f"\u2264 {text}"
            rows.append((label, f"{text} {unit}".strip()))
        else:
            rows.append((label, str(value)))
    return rows


def _run_section(run: RunResult) -> str:
    return "".join([*_summary_html(run), *_charts_html(run), _table(("server", ""), _server_rows(run))])


def _per_user(aggregate: float | None, users: float | None) -> float | None:
    return aggregate / users if aggregate is not None and users else None


def pareto_chart(result: BenchResult) -> str:
    """Tokens/s per user against aggregate tokens/s across a sweep, measured and planned.

    Both sides divide output tokens/s by concurrent requests: measured by the run's mean
    concurrency, predicted by the batch the plan was made for.
    """
    measured: list[tuple[float, float]] = []
    predicted: list[tuple[float, float]] = []
    names: list[str] = []
    plan_names: list[str] = []
    for run in result.runs:
        s, plan = run.summary, run.plan
        per_user = _per_user(s.output_tps, s.mean_concurrency)
        if s.output_tps is not None and per_user is not None:
            measured.append((s.output_tps, per_user))
            names.append(_load_tag(run))
        per_user_plan = _per_user(plan.predicted_output_tps, plan.batch)
        if plan.available and plan.predicted_output_tps is not None and per_user_plan is not None:
            predicted.append((plan.predicted_output_tps, per_user_plan))
            plan_names.append(f"b={plan.batch}")
    series: Series = [("measured", measured)]
    if predicted:
        series.append(("plan (predicted)", predicted))
    return chart(
        "Tokens/s per user against aggregate tokens/s",
        series,
        "aggregate output tokens/s",
        "output tokens/s per user",
        markers=True,
        dashed=("plan (predicted)",),
        labels={"measured": names, "plan (predicted)": plan_names},
    )


def _load_tag(run: RunResult) -> str:
    load = run.load
    return f"c={load.concurrency}" if load.mode == "concurrency" else f"{load.rate:g}/s" if load.rate else load.label


def render_html(result: BenchResult) -> str:
    t, w, env = result.target, result.workload, result.environment
    sweep = ""
    if len(result.runs) > 1:
        sweep = (
            "<h2>Sweep</h2>"
            + pareto_chart(result)
            + chart(
                "Throughput against latency",
                [
                    (
                        "output tok/s vs TPOT p50",
                        [(r.summary.output_tps, r.summary.tpot_ms.p50 or 0) for r in result.runs],
                    ),
                    (
                        "output tok/s vs TTFT p50",
                        [(r.summary.output_tps, r.summary.ttft_ms.p50 or 0) for r in result.runs],
                    ),
                ],
                "output tokens/s",
                "ms",
                markers=True,
            )
        )
    warnings = "".join(f'<p class="warn">warning: {escape(x)}</p>' for x in result.warnings)
    engine = " ".join(x for x in (env.engine, env.engine_version) if x)
    head = (
        f"<h1>sparkserve bench: {escape(t.model)} ({escape(engine)})</h1>"
        f'<p class="muted">{escape(t.url)} {escape(t.api)} &middot; {escape(result.created_at)}'
        f"{' &middot; interrupted' if result.interrupted else ''}</p>"
        f"<p>workload {escape(w.kind)}: {w.prompt_len} prompt + {w.output_len} output tokens, tokenizer "
        f"{escape(w.tokenizer)}; host {escape(env.hardware.cpu or '?')}, {env.hardware.cpu_cores or '?'} cores, "
        f"{_num(env.hardware.mem_total_gib)} GiB, GPUs: {escape(', '.join(env.hardware.gpus) or 'none')}</p>"
    )
    body = head + warnings + sweep + "".join(_run_section(r) for r in result.runs)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>sparkserve bench {escape(t.model)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )

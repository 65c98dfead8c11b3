"""The arithmetic: per-request TTFT, TPOT, ITL, E2E and the run summary built from them.

Definitions (docs/bench.md repeats them; the result schema carries them as descriptions):
- TTFT: request sent -> first chunk that carries an output token.
- E2E: request sent -> last chunk that carries an output token.
- TPOT: (E2E - TTFT) / (output tokens - 1), per request; requests with one token have none.
- ITL: one value per output token after the first. A chunk that carries n tokens, arriving g
  after the previous token chunk, contributes n values of g / n; extra tokens in the first
  chunk arrived together with the first token and contribute zeros. So a request's ITLs sum to
  E2E - TTFT and their mean equals its TPOT when the server's counts are used.
- Throughput: tokens of completed requests / run duration (first send -> last completion).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sparkserve.bench.outcome import ERROR_KINDS, Outcome
from sparkserve.bench.slo import Slo
from sparkserve.bench.stats import describe, percentile


@dataclass(frozen=True)
class RequestMetrics:
    ttft_s: float
    e2e_s: float
    tpot_s: float | None
    itl_s: list[float]
    output_tokens: int


def itl_values(chunk_times: Sequence[float], chunk_tokens: Sequence[int]) -> list[float]:
    """Per-token inter-token latencies (s) from chunk arrivals and the tokens each chunk carried."""
    out: list[float] = []
    if not chunk_times:
        return out
    out.extend([0.0] * max(0, chunk_tokens[0] - 1))
    prev = chunk_times[0]
    for t, n in zip(chunk_times[1:], chunk_tokens[1:], strict=False):
        if n <= 0:
            continue
        share = (t - prev) / n
        out.extend([share] * n)
        prev = t
    return out


def request_metrics(chunk_times: Sequence[float], chunk_tokens: Sequence[int],
                    output_tokens: int | None = None) -> RequestMetrics | None:
    """Metrics of one request; None when no chunk carried a token."""
    if not chunk_times:
        return None
    tokens = output_tokens if output_tokens is not None else sum(chunk_tokens)
    ttft, e2e = chunk_times[0], chunk_times[-1]
    tpot = (e2e - ttft) / (tokens - 1) if tokens > 1 else None
    return RequestMetrics(ttft_s=ttft, e2e_s=e2e, tpot_s=tpot, itl_s=itl_values(chunk_times, chunk_tokens),
                          output_tokens=tokens)


def _ms(values: Iterable[float]) -> list[float]:
    return [v * 1000.0 for v in values]


def summarize(outcomes: Sequence[Outcome], duration_s: float, slos: Sequence[Slo] = ()) -> dict:
    """The run summary (the `Summary` schema's fields) of measured requests."""
    ttft: list[float] = []
    tpot: list[float] = []
    e2e: list[float] = []
    itl: list[float] = []
    per_request: list[tuple[float, float | None, list[float], float]] = []
    out_tokens = in_tokens = 0
    busy = 0.0
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    short = 0
    for o in outcomes:
        busy += max(0.0, o.ended_at - o.sent_at)
        if not o.ok:
            errors[o.error_kind or "unknown"] += 1
            if o.http_status:
                statuses[str(o.http_status)] += 1
            continue
        m = request_metrics(o.chunk_times, o.chunk_tokens, o.output_tokens)
        if m is None:
            continue
        ttft.append(m.ttft_s)
        e2e.append(m.e2e_s)
        if m.tpot_s is not None:
            tpot.append(m.tpot_s)
        itl.extend(m.itl_s)
        per_request.append((m.ttft_s * 1000, None if m.tpot_s is None else m.tpot_s * 1000, _ms(m.itl_s),
                            m.e2e_s * 1000))
        out_tokens += m.output_tokens
        in_tokens += o.prompt_tokens if o.prompt_tokens is not None else (o.prompt_tokens_sent or 0)
        short += o.short_output
    completed = len(per_request)
    failed = sum(1 for o in outcomes if not o.ok)
    dur = duration_s if duration_s > 0 else math.nan
    tpot_ms = describe(_ms(tpot))
    summary = {
        "completed": completed,
        "failed": failed,
        "duration_s": duration_s,
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "request_rate": completed / dur if completed else 0.0,
        "output_tps": out_tokens / dur if completed else 0.0,
        "total_tps": (in_tokens + out_tokens) / dur if completed else 0.0,
        "decode_tps": 1000.0 / tpot_ms["mean"] if tpot_ms["mean"] else None,
        "mean_concurrency": busy / dur if outcomes else 0.0,
        "ttft_ms": describe(_ms(ttft)),
        "tpot_ms": tpot_ms,
        "itl_ms": describe(_ms(itl)),
        "e2e_ms": describe(_ms(e2e)),
        "errors": {k: errors[k] for k in (*ERROR_KINDS, *sorted(set(errors) - set(ERROR_KINDS))) if errors[k]},
        "http_statuses": dict(sorted(statuses.items())),
        "short_outputs": short,
    }
    summary.update(goodput(per_request, duration_s=duration_s, slos=slos, summary=summary))
    return summary


def _request_value(slo: Slo, ttft: float, tpot: float | None, itls: list[float], e2e: float) -> float:
    """A request's own value for an SLO: its TTFT, TPOT or E2E; for ITL, its ITLs' statistic."""
    if slo.metric == "ttft":
        return ttft
    if slo.metric == "e2e":
        return e2e
    if slo.metric == "tpot":
        return tpot if tpot is not None else 0.0  # one token: no decode time to miss (as vLLM's goodput)
    if not itls:
        return 0.0
    if slo.statistic == "mean":
        return math.fsum(itls) / len(itls)
    return percentile(sorted(itls), float(slo.statistic[1:]))


def goodput(per_request: Sequence[tuple[float, float | None, list[float], float]], *,
            duration_s: float, slos: Sequence[Slo], summary: dict) -> dict:
    """Goodput (requests meeting every SLO, per second) and each SLO's attainment over the run."""
    if not slos:
        return {"goodput_rps": None, "good_requests": None, "slo": []}
    good = sum(1 for ttft, tpot, itls, e2e in per_request
               if all(s.holds(_request_value(s, ttft, tpot, itls, e2e)) for s in slos))
    results = []
    for s in slos:
        observed = summary[f"{s.metric}_ms"][s.statistic]
        met = sum(1 for ttft, tpot, itls, e2e in per_request if s.holds(_request_value(s, ttft, tpot, itls, e2e)))
        results.append({
            "slo": s.text, "metric": s.metric, "statistic": s.statistic, "bound_ms": s.bound_ms,
            "observed_ms": observed, "attained": observed is not None and s.holds(observed),
            "requests_meeting": met,
        })
    return {"goodput_rps": good / duration_s if duration_s > 0 else 0.0, "good_requests": good, "slo": results}

"""--slo parsing: every mistake is one line and exit 2, before any request is sent."""

from __future__ import annotations

import pytest

from bench_servers import run_bench, stand_in
from sparkserve.bench.slo import parse_slo, parse_slos
from sparkserve.errors import UserError


@pytest.mark.parametrize(("text", "metric", "stat", "bound", "inclusive"), [
    ("ttft:p95<500ms", "ttft", "p95", 500.0, False),
    ("tpot:p99<50ms", "tpot", "p99", 50.0, False),
    ("e2e:mean<=2s", "e2e", "mean", 2000.0, True),
    ("ITL:P50 < 1500us", "itl", "p50", 1.5, False),
    ("e2el:median<3.5s", "e2e", "p50", 3500.0, False),
])
def test_valid_slos(text: str, metric: str, stat: str, bound: float, inclusive: bool) -> None:
    slo = parse_slo(text)
    assert (slo.metric, slo.statistic, slo.inclusive) == (metric, stat, inclusive)
    assert slo.bound_ms == pytest.approx(bound)


@pytest.mark.parametrize(("text", "says"), [
    ("ttft<500ms", "expected METRIC:STAT<VALUE"),
    ("latency_p95<500ms", "expected METRIC:STAT<VALUE"),
    ("ttfb:p95<500ms", "unknown metric 'ttfb'"),
    ("ttft:p97<500ms", "unknown statistic 'p97'"),
    ("ttft:p95<500", "missing unit"),
    ("ttft:p95<500min", "unknown or missing unit 'min'"),
    ("ttft:p95>500ms", "expected METRIC:STAT<VALUE"),
    ("ttft:p95<0ms", "above zero"),
])
def test_invalid_slos_name_the_problem(text: str, says: str) -> None:
    with pytest.raises(UserError, match=says.replace("(", r"\(")):
        parse_slo(text)


def test_repeated_slo_is_rejected() -> None:
    with pytest.raises(UserError, match="repeats"):
        parse_slos(["ttft:p95<500ms", "ttft:p95<400ms"])


def test_bad_slo_on_the_command_line_is_one_line_exit_2(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("openai", record=record) as (url, _):
        proc, data = run_bench(["--url", url, "--slo", "ttft:p95<500ms", "--slo", "tpot:p99<fast"], tmp_path / "r.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error: --slo 'tpot:p99<fast'")
    assert data is None and not record.exists()  # nothing was sent

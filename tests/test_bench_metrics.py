"""Metric arithmetic on recorded request timings, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from sparkserve.bench.metrics import itl_values, request_metrics, summarize
from sparkserve.bench.outcome import Outcome
from sparkserve.bench.slo import parse_slos
from sparkserve.bench.stats import describe, percentile
from sparkserve.bench.stream import OllamaStream, OpenAIStream
from sparkserve.bench.tokens import approximate_count


def outcome(times: list[float], tokens: list[int], output: int | None, sent: float = 0.0, ok: bool = True) -> Outcome:
    o = Outcome(index=0, sent_at=sent, ended_at=sent + (times[-1] if times else 0.5), chunk_times=times,
                chunk_tokens=tokens, output_tokens=output, ok=ok, prompt_tokens=10)
    return o


def test_multi_token_chunks_spread_their_gap_over_their_tokens() -> None:
    # chunks at 100, 150, 250, 300 ms carrying 1, 2, 1, 3 tokens; the server counted 7.
    m = request_metrics([0.100, 0.150, 0.250, 0.300], [1, 2, 1, 3], 7)
    assert m is not None
    assert m.ttft_s == pytest.approx(0.100)
    assert m.e2e_s == pytest.approx(0.300)
    assert m.tpot_s == pytest.approx(0.200 / 6)
    assert [round(v * 1000, 3) for v in m.itl_s] == [25.0, 25.0, 100.0, 16.667, 16.667, 16.667]
    assert math.fsum(m.itl_s) == pytest.approx(m.e2e_s - m.ttft_s)
    assert math.fsum(m.itl_s) / len(m.itl_s) == pytest.approx(m.tpot_s)


def test_extra_tokens_of_the_first_chunk_count_as_zero_gaps() -> None:
    assert [round(v * 1000, 6) for v in itl_values([0.2, 0.3], [3, 2])] == [0.0, 0.0, 50.0, 50.0]
    m = request_metrics([0.2, 0.3], [3, 2], None)
    assert m is not None and m.output_tokens == 5 and m.tpot_s == pytest.approx(0.025)


def test_one_token_has_no_tpot_and_no_itl() -> None:
    m = request_metrics([0.05], [1], 1)
    assert m is not None and m.tpot_s is None and m.itl_s == []
    assert request_metrics([], [], None) is None


def test_percentiles_interpolate_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([5], 99) == 5
    d = describe([10.0, 20.0, 30.0, 40.0, 50.0])
    assert (d["mean"], d["p50"], d["p90"], d["p95"], d["p99"]) == (30.0, 30.0, 46.0, 48.0, pytest.approx(49.6))
    assert describe([])["mean"] is None


def test_summary_of_recorded_requests() -> None:
    a = outcome([0.100, 0.150, 0.250, 0.300], [1, 2, 1, 3], 7, sent=0.0)
    b = outcome([0.200, 0.300], [3, 2], 5, sent=0.5)
    failed = Outcome(index=2, sent_at=0.2, ended_at=0.4, http_status=500).fail("http_status", "HTTP 500: x", 500)
    s = summarize([a, b, failed], duration_s=1.0)
    assert (s["completed"], s["failed"]) == (2, 1)
    assert s["output_tokens"] == 12 and s["input_tokens"] == 20
    assert s["output_tps"] == pytest.approx(12.0)
    assert s["total_tps"] == pytest.approx(32.0)
    assert s["request_rate"] == pytest.approx(2.0)
    assert s["ttft_ms"]["mean"] == pytest.approx(150.0)
    assert s["ttft_ms"]["p90"] == pytest.approx(190.0)
    assert s["e2e_ms"]["p50"] == pytest.approx(300.0)
    assert s["tpot_ms"]["mean"] == pytest.approx((200 / 6 + 25.0) / 2)
    # all ITLs: 25, 25, 100, 16.67 x3 (a) and 0, 0, 50, 50 (b)
    assert s["itl_ms"]["count"] == 10
    assert s["itl_ms"]["mean"] == pytest.approx(30.0)
    assert s["itl_ms"]["p50"] == pytest.approx((50 / 3 + 25) / 2)
    assert s["decode_tps"] == pytest.approx(1000 / s["tpot_ms"]["mean"])
    assert s["mean_concurrency"] == pytest.approx((0.3 + 0.3 + 0.2) / 1.0)  # busy seconds / duration
    assert s["errors"] == {"http_status": 1} and s["http_statuses"] == {"500": 1}


def test_goodput_counts_requests_meeting_every_slo() -> None:
    a = outcome([0.100, 0.150, 0.250, 0.300], [1, 2, 1, 3], 7)  # TTFT 100, TPOT 33.3
    b = outcome([0.200, 0.300], [3, 2], 5)  # TTFT 200, TPOT 25
    s = summarize([a, b], 2.0, parse_slos(["ttft:p95<150ms"]))
    assert s["good_requests"] == 1 and s["goodput_rps"] == pytest.approx(0.5)
    assert s["slo"][0]["observed_ms"] == pytest.approx(195.0) and s["slo"][0]["attained"] is False
    s = summarize([a, b], 2.0, parse_slos(["ttft:p95<150ms", "tpot:mean<30ms"]))
    assert s["good_requests"] == 0
    s = summarize([a, b], 2.0, parse_slos(["e2e:p99<=300ms", "itl:p99<0.2s"]))
    assert s["good_requests"] == 2 and all(x["attained"] for x in s["slo"])


def _feed_in_pieces(stream, raw: bytes, cuts: list[int], times: list[float]) -> None:
    start = 0
    for cut, t in zip([*cuts, len(raw)], times, strict=False):
        stream.feed(raw[start:cut], t)
        start = cut
    stream.finish()


def test_sse_counts_come_from_the_server_even_when_lines_split_across_reads() -> None:
    events = [
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":9,"completion_tokens":0}}',
        b'data: {"choices":[{"delta":{"content":" a \\"completion_tokens\\":99"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}',
        b'data: {"choices":[{"delta":{"content":" b c d"}}],"usage":{"prompt_tokens":9,"completion_tokens":4}}',
        b'data: {"choices":[{"delta":{"content":" e f"}}],"usage":{"prompt_tokens":9,"completion_tokens":6}}',
        b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":6}}',
        b"data: [DONE]",
    ]
    raw = b"\n\n".join(events) + b"\n\n"
    o = Outcome(index=0)
    stream = OpenAIStream(o, chat=True, count_text=approximate_count, keep_text=False)
    first_end = raw.index(b"\n\n", raw.index(b'completion_tokens":1')) + 2
    second_mid = raw.index(b'completion_tokens":4') - 5  # a read ends inside the third event
    _feed_in_pieces(stream, raw, [first_end, second_mid], [0.010, 0.030, 0.045])
    assert o.prompt_tokens == 9 and o.output_tokens == 6
    assert o.chunk_tokens == [1, 3, 2] and o.tokens_exact
    assert o.chunk_times == [0.010, 0.045, 0.045]


def test_sse_without_usage_counts_the_text() -> None:
    raw = (
        b'data: {"choices":[{"text":" one"}]}\n\ndata: {"choices":[{"text":" two six"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
    )
    o = Outcome(index=0)
    _feed_in_pieces(OpenAIStream(o, chat=False, count_text=approximate_count, keep_text=False), raw, [40], [0.1, 0.3])
    assert o.chunk_tokens == [1, 2] and not o.tokens_exact and o.output_tokens == 3 and o.prompt_tokens == 3


def test_ollama_final_line_gives_server_timings_and_short_answers() -> None:
    raw = (
        b'{"response":" a","done":false}\n{"response":"","done":false}\n{"response":" b","done":false}\n'
        b'{"response":"","done":true,"done_reason":"stop","eval_count":2,"eval_duration":40000000,'
        b'"prompt_eval_count":5,"prompt_eval_duration":2000000,"load_duration":1000000,"total_duration":50000000}\n'
    )
    o = Outcome(index=0, expected_output_tokens=8)
    _feed_in_pieces(OllamaStream(o, chat=False, keep_text=True), raw, [31, 62], [0.01, 0.02, 0.05])
    assert o.chunk_times == [0.01, 0.05] and o.chunk_tokens == [1, 1]
    assert o.output_tokens == 2 and o.prompt_tokens == 5 and o.short_output and o.text == " a b"
    assert o.server_timing == {
        "total_ms": 50.0,
        "load_ms": 1.0,
        "prompt_eval_ms": 2.0,
        "eval_ms": 40.0,
        "eval_count": 2,
        "prompt_eval_count": 5,
    }

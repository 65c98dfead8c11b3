"""The JSON result (schema, field descriptions), the offline HTML report and `bench compare`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

from bench_servers import run_bench, stand_in
from sparkserve.bench.schema import SCHEMA_VERSION, BenchResult


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple:
    """Two results of a multi-token stream (chunks of 1, 3 and 2 tokens with per-chunk usage)."""
    tmp = tmp_path_factory.mktemp("results")
    out = []
    for delay in ("0.004", "0.008"):
        with stand_in("openai", "--tokens-per-chunk", "1,3,2", "--chunk-delay", delay) as (url, _):
            proc, data = run_bench(
                [
                    "--url",
                    url,
                    "--api",
                    "openai-completions",
                    "-p",
                    "8",
                    "-o",
                    "12",
                    "-n",
                    "4",
                    "-c",
                    "1,2",
                    "--slo",
                    "ttft:p99<5s",
                    "--per-chunk-usage",
                    "--html",
                    str(tmp / f"r{delay}.html"),
                ],
                tmp / f"r{delay}.json",
            )
            assert proc.returncode == 0, proc.stderr
            out.append((tmp / f"r{delay}.json", data, tmp / f"r{delay}.html"))
    return tuple(out)


def test_result_validates_against_its_json_schema(results) -> None:
    _, data, _ = results[0]
    schema = BenchResult.model_json_schema()
    jsonschema.validate(data, schema)
    assert data["schema_version"] == SCHEMA_VERSION and data["tool"] == "sparkserve bench"
    summary = data["summary"]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert set(summary[key]) >= {"mean", "p50", "p90", "p95", "p99"}
    for key in ("output_tps", "request_rate", "completed", "failed", "goodput_rps"):
        assert key in summary
    assert set(data) >= {"workload", "environment", "runs", "target", "warnings", "interrupted"}
    assert set(data["environment"]) >= {
        "engine",
        "engine_version",
        "server_args",
        "hardware",
        "model",
        "sparkserve_version",
    }
    assert data["runs"][0]["requests"] and set(data["runs"][0]["server"]) >= {"readings", "mem_available_gib_min"}


def test_metric_fields_carry_their_definitions(results) -> None:
    schema = BenchResult.model_json_schema()
    props = schema["$defs"]["Summary"]["properties"]
    assert "first streamed chunk that carries an output token" in props["ttft_ms"]["description"]
    assert "(E2E - TTFT) / (output tokens - 1)" in props["tpot_ms"]["description"]
    assert "n values of g/n" in props["itl_ms"]["description"]
    assert "last streamed chunk" in props["e2e_ms"]["description"]
    undocumented = [k for k, v in props.items() if not v.get("description")]
    assert undocumented == []


def test_multi_token_chunks_are_recorded_with_the_server_counts(results) -> None:
    _, data, _ = results[0]
    for run in data["runs"]:
        for r in run["requests"]:
            assert r["chunk_tokens"] == [1, 3, 2, 1, 3, 2] and r["tokens_exact"]
            assert r["output_tokens"] == 12
            assert r["tpot_ms"] == pytest.approx((r["chunk_ms"][-1] - r["chunk_ms"][0]) / 11, abs=1e-3)
        assert run["summary"]["itl_ms"]["count"] == 11 * run["summary"]["completed"]


def test_html_report_is_self_contained(results) -> None:
    _, data, html_path = results[0]
    html = html_path.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") >= 4  # throughput, scatter, CDF, sweep
    assert not re.search(r"(src|href)\s*=", html, re.IGNORECASE)  # nothing loaded from anywhere
    assert not re.search(r"https?://", html.replace(data["target"]["url"], ""))
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert "concurrency 1" in html and "concurrency 2" in html


def test_compare_shows_the_differences(results) -> None:
    (a, _, _), (b, _, _) = results
    proc = subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", "bench", "compare", str(a), str(b), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    diff = json.loads(proc.stdout)
    assert [p["load"] for p in diff["points"]] == ["concurrency 1", "concurrency 2"]
    tpot = next(m for m in diff["points"][0]["metrics"] if m["metric"] == "TPOT mean ms")
    assert tpot["b"] > tpot["a"] and tpot["verdict"] == "worse" and tpot["change_pct"] > 0  # 8 ms chunks vs 4 ms
    tps = next(m for m in diff["points"][0]["metrics"] if m["metric"] == "output tok/s")
    assert tps["verdict"] == "worse"
    table = subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", "bench", "compare", str(a), str(b)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"COLUMNS": "140"},
    )
    assert table.returncode == 0 and "TPOT mean ms" in table.stdout and "concurrency 2" in table.stdout


def test_compare_refuses_what_is_not_a_result(tmp_path, results) -> None:
    bogus = tmp_path / "other.json"
    bogus.write_text(json.dumps({"hello": 1}))
    proc = subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", "bench", "compare", str(results[0][0]), str(bogus)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"error: {bogus}: not a sparkserve bench result (write one with 'sparkserve bench --json FILE')\n"
    )

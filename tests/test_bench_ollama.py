"""The Ollama API against a stand-in server (Ollama itself cannot be installed here) that
streams /api/generate and /api/chat with Ollama's final timings and records every request."""

from __future__ import annotations

import json

import pytest

from bench_servers import run_bench, stand_in


def _recorded(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_with_num_predict_and_short_answers(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("ollama", "--short-every", "3", "--chunk-delay", "0.004", record=record) as (url, _):
        proc, data = run_bench(["--url", url, "--api", "ollama", "--model", "standin", "-p", "12", "-o", "10",
                                "-n", "6", "-c", "2", "--warmup", "0"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    bodies = _recorded(record)
    assert len(bodies) == 6 and {b["path"] for b in bodies} == {"/api/generate"}
    for b in bodies:
        assert b["body"]["stream"] is True and b["body"]["options"] == {"num_predict": 10, "temperature": 0.0}
        assert b["body"]["model"] == "standin" and "ignore_eos" not in b["body"]
    run = data["runs"][0]
    s = run["summary"]
    assert s["completed"] == 6 and s["failed"] == 0
    assert s["short_outputs"] == 2  # every third request stopped at half its num_predict
    short = [r for r in run["requests"] if r["short_output"]]
    assert all(r["output_tokens"] == 5 and r["finish_reason"] == "stop" for r in short)
    for r in run["requests"]:
        assert r["output_tokens"] == r["server_timing"]["eval_count"] == sum(r["chunk_tokens"])
        assert r["prompt_tokens"] == r["server_timing"]["prompt_eval_count"] > 0
        assert r["server_timing"]["eval_ms"] == pytest.approx(r["output_tokens"] * 4.0)
        assert not r["tokens_exact"]
    server = run["server"]
    assert server["source"] == "ollama"
    assert server["ollama_eval_tps"] == pytest.approx(250.0)  # 1 token per 4 ms of eval_duration
    assert server["ollama_load_ms_total"] == pytest.approx(6.0)
    assert data["environment"]["engine"] == "ollama" and data["environment"]["engine_version"] == "0.12.3"
    assert any("Ollama has no ignore_eos" in w for w in data["warnings"])
    assert "2 request(s) returned fewer tokens than asked for" in proc.stdout


def test_chat_conversations_send_the_streamed_answers_back(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("ollama", record=record) as (url, _):
        proc, data = run_bench(["--url", url, "--api", "ollama-chat", "-w", "multiturn", "--turns", "2", "-p", "6",
                                "-o", "4", "-n", "4", "-c", "2", "--warmup", "0"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    bodies = [b["body"] for b in _recorded(record)]
    assert {len(b["messages"]) for b in bodies} == {1, 3}
    for b in bodies:
        if len(b["messages"]) == 3:
            assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
            assert b["messages"][1]["content"] == " t0 t1 t2 t3"  # what the stand-in streamed in turn one
    assert data["summary"]["completed"] == 4


def test_rate_mode_against_ollama(tmp_path) -> None:
    with stand_in("ollama") as (url, _):
        proc, data = run_bench(["--url", url, "--api", "ollama", "-r", "50", "-n", "8", "-p", "6", "-o", "4"],
                               tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert data["runs"][0]["load"]["mode"] == "rate" and data["summary"]["completed"] == 8
    assert data["runs"][0]["plan"]["available"] is False  # no --hardware: "no plan" and why
    assert "no hardware profile" in data["runs"][0]["plan"]["reason"]


def test_an_ollama_url_without_api_gets_the_native_api(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("ollama", record=record) as (url, _):
        proc, data = run_bench(["--url", url, "-n", "2", "-p", "6", "-o", "4", "--warmup", "0"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert data["target"]["api"] == "ollama" and data["target"]["model"] == "standin:latest"
    assert {b["path"] for b in _recorded(record)} == {"/api/generate"}

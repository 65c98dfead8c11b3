"""What bench asks of the server, and that it never waits past what the user gave it.

The request shape matches `vllm bench serve --temperature 0` unless told otherwise (greedy, no per-chunk usage);
a Ctrl-C during warm-up and a --duration end the run without waiting for a request that never ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench_servers import run_bench, stand_in

NEVER_S = "3600"  # a stalled stream that outlives any test: the run must not wait for it
HANG_GUARD_S = 120  # a hang guard, far below NEVER_S; not a speed expectation


def _bodies(record) -> list[dict]:
    return [json.loads(line)["body"] for line in record.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("api", ["openai-completions", "openai-chat"])
def test_default_requests_are_greedy_without_per_chunk_usage(tmp_path, api: str) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("openai", record=record) as (url, _):
        proc, data = run_bench(["--url", url, "--api", api, "-p", "8", "-o", "6", "-n", "2", "--warmup", "0"],
                               tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    for body in _bodies(record):
        assert body["temperature"] == 0.0
        assert body["stream_options"] == {"include_usage": True}
    assert data["workload"]["temperature"] == 0.0
    assert all(r["output_tokens"] == 6 and r["tokens_exact"] for r in data["runs"][0]["requests"])


def test_temperature_and_per_chunk_usage_are_sent_when_asked(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("openai", record=record) as (url, _):
        proc, _data = run_bench(["--url", url, "--api", "openai-completions", "-p", "8", "-o", "6", "-n", "2",
                                 "--warmup", "0", "--temperature", "0.7", "--per-chunk-usage"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    for body in _bodies(record):
        assert body["temperature"] == 0.7
        assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparkserve.cli", "bench", *args, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"COLUMNS": "120"})


def _wait_for_requests(record, proc: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not (record.exists() and len(record.read_text().splitlines()) >= count):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the benchmark sent no request"
        time.sleep(0.05)


def test_ctrl_c_during_warmup_does_not_wait_for_the_warmup_request(tmp_path) -> None:
    record, out = tmp_path / "requests.jsonl", tmp_path / "r.json"
    with stand_in("openai", "--faults", "stall", "--stall-s", NEVER_S, record=record) as (url, _):
        proc = _start(["--url", url, "--api", "openai-completions", "-p", "8", "-o", "6", "-n", "4",
                       "--warmup", "1", "--timeout", NEVER_S, "--json", str(out)])
        try:
            _wait_for_requests(record, proc, 1)
            proc.send_signal(signal.SIGINT)
            _stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert json.loads(out.read_text())["interrupted"] is True


def test_duration_bounds_requests_in_flight(tmp_path) -> None:
    """Requests still streaming at the deadline get as long again, then are cancelled, not failed."""
    record, out = tmp_path / "requests.jsonl", tmp_path / "r.json"
    with stand_in("openai", "--faults", "ok,stall", "--stall-s", NEVER_S, record=record) as (url, _):
        proc, data = run_bench(["--url", url, "--api", "openai-completions", "-p", "8", "-o", "6", "-c", "1",
                                "--duration", "1", "--warmup", "0", "--timeout", NEVER_S], out,
                               timeout=HANG_GUARD_S)
    run = data["runs"][0]
    assert run["stopped_reason"] == "duration" and run["cancelled"] == 1
    assert data["summary"]["completed"] == 1 and data["summary"]["failed"] == 0
    assert proc.returncode == 0, proc.stdout

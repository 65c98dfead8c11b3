"""Server faults are counted per kind and never crash a run; a target that is down fails fast."""

from __future__ import annotations

import socket

import pytest

from bench_servers import free_port, run_bench, stand_in

FAULTS = "ok,http500,malformed,truncated,error_event,stall,ok"
EXPECTED = {"http_status": 1, "malformed_stream": 1, "truncated_stream": 1, "stream_error": 1, "timeout": 1}


@pytest.mark.parametrize(
    ("kind", "api"), [("openai", "openai-chat"), ("openai", "openai-completions"), ("ollama", "ollama")]
)
def test_each_fault_is_counted_by_kind(tmp_path, kind: str, api: str) -> None:
    with stand_in(kind, "--faults", FAULTS) as (url, server):
        proc, data = run_bench(
            [
                "--url",
                url,
                "--api",
                api,
                "-p",
                "8",
                "-o",
                "6",
                "-n",
                "7",
                "--warmup",
                "0",
                "--timeout",
                "1.5",
                "--max-failure-rate",
                "0.75",
            ],
            tmp_path / "r.json",
        )
        assert server.poll() is None
    assert proc.returncode == 0, proc.stderr  # 5 of 7 failed: within the 0.75 allowed
    summary = data["summary"]
    assert (summary["completed"], summary["failed"]) == (2, 5)
    assert summary["errors"] == EXPECTED
    assert summary["http_statuses"] == {"500": 1}
    failed = [r for r in data["runs"][0]["requests"] if not r["ok"]]
    assert all(r["error"] for r in failed)
    assert data["runs"][0]["stopped_reason"] == "num_prompts"


@pytest.mark.parametrize(("allowed", "code"), [(None, 1), ("0.49", 1), ("0.5", 0)])
def test_more_failures_than_max_failure_rate_exit_non_zero(tmp_path, allowed: str | None, code: int) -> None:
    """Half of the requests failing is a failed run by default (--max-failure-rate 0)."""
    with stand_in("openai", "--faults", "ok,http500,ok,http500") as (url, _server):
        flags = ["--max-failure-rate", allowed] if allowed else []
        proc, data = run_bench(
            ["--url", url, "--api", "openai-completions", "-p", "8", "-o", "6", "-n", "4", "--warmup", "0", *flags],
            tmp_path / "r.json",
        )
    assert (data["summary"]["completed"], data["summary"]["failed"]) == (2, 2)
    assert proc.returncode == code, proc.stdout
    if code:
        assert "50.0% of the requests of a load point failed" in proc.stdout


@pytest.mark.parametrize(("kind", "api"), [("openai", "openai-completions"), ("ollama", "ollama-chat")])
def test_a_server_that_dies_mid_run_stops_the_run(tmp_path, kind: str, api: str) -> None:
    with stand_in(kind, "--faults", "ok,ok,ok,die", "--chunk-delay", "0.02") as (url, server):
        proc, data = run_bench(
            ["--url", url, "--api", api, "-p", "8", "-o", "6", "-n", "40", "-c", "2", "--warmup", "0"],
            tmp_path / "r.json",
        )
        assert server.wait(timeout=10) == 3
    assert proc.returncode == 1
    run = data["runs"][0]
    assert run["stopped_reason"] == "server_died"
    assert data["summary"]["completed"] >= 2
    assert set(data["summary"]["errors"]) == {"server_died"}
    assert len(run["requests"]) < 40  # it stopped issuing instead of hammering a dead port
    assert "stopped: server died" in proc.stdout


def test_a_target_that_is_not_up_fails_fast_with_one_line(tmp_path) -> None:
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    proc, data = run_bench(["--url", f"http://127.0.0.1:{port}", "-n", "5"], tmp_path / "r.json", timeout=30)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"error: http://127.0.0.1:{port}: not up (connection refused); start it (sparkserve up) or check the URL\n"
    )
    assert data is None


def test_a_model_the_server_does_not_serve_is_refused_before_load(tmp_path) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("openai", record=record) as (url, _):
        proc, _ = run_bench(["--url", url, "--model", "other"], tmp_path / "r.json")
    assert proc.returncode == 2
    assert "does not serve 'other'; it serves stand-in" in proc.stderr
    assert not record.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["-p", "0"], "--prompt-len and --output-len must be at least 1"),
        (["-o", "0"], "--prompt-len and --output-len must be at least 1"),
        (["-w", "zipf"], "--workload 'zipf': expected one of"),
        (["-w", "file"], "--workload file needs --dataset PATH"),
        (
            ["-w", "file", "--dataset", "/nonexistent/sharegpt.json"],
            "--dataset /nonexistent/sharegpt.json: no such file",
        ),
        (["-H", "bogus"], "bogus"),
        (["-c", "0"], "--concurrency '0': each value must be above zero"),
    ],
)
def test_bad_arguments_fail_before_the_server_is_asked(tmp_path, args, message) -> None:
    record = tmp_path / "requests.jsonl"
    with stand_in("openai", record=record) as (url, _):
        proc, _ = run_bench(["--url", url, "-n", "2", *args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1
    assert not record.exists() or record.read_text() == "", "the server was asked before the arguments were checked"

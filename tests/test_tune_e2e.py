"""`sparkserve tune` on the real CPU vLLM: four configurations, two of which vLLM refuses at start,
interrupted, crashed and resumed.

The stack (the demo's CPU stack) sets --long-prefill-token-threshold 3000; the space tries
max-model-len 2048 and 4096 (the tiny model's positions). vLLM's scheduler refuses a threshold above
max-model-len when it builds its configuration, so both 2048 configurations fail at start:
sparkserve's own checks pass them (the planner knows nothing of the threshold), vLLM does not.
Each is recorded as failed, with doctor's cause, and the search goes on.
Run 1 is interrupted (SIGINT, as Ctrl-C) as soon as its first trial is in the journal; run 2
resumes and is killed outright (SIGKILL, as a crash) while its next engine starts; run 3 resumes,
stops the engine the crash left behind, must not repeat a finished trial, writes the JSON and
applies the best arguments.
Each CPU vLLM start costs about 30 s, so the space is small and each load level sends few requests.
"""

from __future__ import annotations

import json
import signal
import tomllib
from pathlib import Path

from native_kit import cli_env, free_port, group_alive, pgrep, read_pid_file, run_cli, start_cli, wait_for
from sparkserve.demo.stack import SERVICE, demo_stack_text

REFUSED_BELOW = 3000  # --long-prefill-token-threshold: vLLM refuses a max-model-len below it
TUNE = ["tune", "--slo", "ttft_p90_ms=2000,itl_p90_ms=200", "-p", "64", "-o", "16", "-n", "6",
        "--space", "max-num-seqs=2,4", "--space", "max-model-len=2048,4096", "--space", "max-num-batched-tokens=2048",
        "--budget", "20m"]


def _entries(journal: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return [e for e in lines if e.get("kind") == kind]


def _trials(journal: Path) -> list[dict]:
    return _entries(journal, "trial")


def _starts(journal: Path) -> list[dict]:
    return _entries(journal, "start")


def test_tune_finds_resumes_records_failures_and_applies(vllm_venv, tiny_model, tmp_path):
    port = free_port()
    stack = tmp_path / "sparkserve.toml"
    original = demo_stack_text(tiny_model, str(vllm_venv / "bin" / "vllm"), port,
                               args={"long_prefill_token_threshold": REFUSED_BELOW})
    stack.write_text(original)
    journal = tmp_path / ".sparkserve" / f"tune-{SERVICE}.jsonl"

    first = start_cli(tmp_path, *TUNE)
    wait_for("the first finished trial", lambda: (journal.exists() and _trials(journal)) or first.poll() is not None)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, f"{out}\n{err}"
    assert "--resume" in out
    done_before = _trials(journal)
    assert len(done_before) == 1, done_before
    assert read_pid_file(tmp_path, SERVICE) is None, "the interrupted trial's engine was left behind"
    assert not pgrep(f"vllm serve .*--port {port}$")

    # A crash: the search is killed outright while its next engine starts; that engine is left behind.
    started_before = len(_starts(journal))
    crashed = start_cli(tmp_path, *TUNE, "--resume")
    wait_for("the next engine's start", lambda: len(_starts(journal)) > started_before or crashed.poll() is not None)
    crashed.kill()
    crashed.communicate(timeout=60)
    orphan = _starts(journal)[-1]
    assert len(_trials(journal)) == 1

    result_file = tmp_path / "tune.json"
    html_file = tmp_path / "tune.html"
    second = run_cli(
        tmp_path, *TUNE, "--resume", "--json", str(result_file), "--html", str(html_file), "--apply", env=cli_env()
    )
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "resuming: 1 trial(s)" in second.stdout
    assert f"(pid {orphan['pid']}), left running by the interrupted search" in second.stdout
    assert not group_alive(orphan["pgid"])

    trials = _trials(journal)
    ids = [t["id"] for t in trials]
    assert len(ids) == len(set(ids)), "a finished trial ran again"
    assert ids[0] == done_before[0]["id"]

    data = json.loads(result_file.read_text())
    assert data["slo"] == {"ttft_p90_ms": 2000.0, "itl_p90_ms": 200.0}
    best = data["best"]
    assert best["meets_slo"] is True
    assert best["load"] >= 1 and best["measured"]["goodput_rps"] > 0
    assert all(s["attained"] for s in best["measured"]["slo"])
    assert data["pareto"] and all(p["aggregate_tps"] > 0 for p in data["pareto"])
    measured = [t for t in data["trials"] if t["status"] == "measured"]
    assert measured and all("plan_vs_measured" in t for t in measured)
    assert all(t["args"]["max_model_len"] == 4096 for t in measured)
    refused = [t for t in data["trials"] if t["args"]["max_model_len"] < REFUSED_BELOW]
    assert len(refused) == 2, data["trials"]
    for trial in refused:
        assert trial["status"] == "failed" and trial["phase"] == "start", trial
        assert trial["cause_id"] == "invalid_engine_argument", trial
        assert "long_prefill_token_threshold (3000)" in trial["error"], trial
    assert "failed (invalid_engine_argument)" in out + second.stdout
    assert best["args"]["max_model_len"] == 4096
    assert "<svg" in html_file.read_text()

    applied = tomllib.loads(stack.read_text())["services"][SERVICE]["args"]
    assert applied["max_num_seqs"] == best["args"]["max_num_seqs"]
    assert applied["max_model_len"] == 4096
    assert applied["max_num_batched_tokens"] == 2048
    assert applied["enable_chunked_prefill"] is True
    assert "enforce_eager = true  # no torch.compile" in stack.read_text()
    assert (tmp_path / "sparkserve.toml.bak").read_text() == original
    assert "+max_model_len = 4096" in second.stdout
    assert read_pid_file(tmp_path, SERVICE) is None
    assert not pgrep(f"vllm serve .*--port {port}$")

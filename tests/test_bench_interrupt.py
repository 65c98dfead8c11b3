"""Ctrl-C (a real SIGINT to the CLI process) writes the partial result of what finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bench_servers import stand_in


def test_sigint_writes_a_partial_result(tmp_path) -> None:
    record, out = tmp_path / "requests.jsonl", tmp_path / "partial.json"
    with stand_in("openai", "--chunk-delay", "0.05", record=record) as (url, _):
        cmd = [sys.executable, "-m", "sparkserve.cli", "bench", "--url", url, "-p", "8", "-o", "20", "-n", "200",
               "-c", "2", "--warmup", "0", "--json", str(out), "--html", str(tmp_path / "partial.html")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ | {"COLUMNS": "120"})
        try:
            deadline = time.monotonic() + 60
            while not (record.exists() and len(record.read_text().splitlines()) >= 5):
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the benchmark sent no requests"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    run = data["runs"][0]
    assert run["stopped_reason"] == "interrupted"
    assert data["summary"]["completed"] >= 3
    assert data["summary"]["failed"] == 0  # requests cut by Ctrl-C are cancelled, not failures
    assert run["cancelled"] >= 1
    assert len(run["requests"]) == data["summary"]["completed"] < 200
    assert "interrupted" in stdout and (tmp_path / "partial.html").exists()

"""`sparkserve doctor --live` against the real CPU vLLM: induce a limit with real traffic, diagnose it.

Three servers: the session one (default flags) read under one request at a time, one started with
--max-num-seqs 1 under 8 concurrent streams, and one whose KV cache holds two usable 128-token blocks (one
request of 256 tokens, past vLLM's null block) under 8 streams of 250-token requests. Run under `flock /tmp/sparkserve-e2e.lock`.
Windows are short; nothing here depends on how fast this machine is, only on what the server reports
while the load runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sparkserve.demo.stack import CPU_ENV, cpu_serve_argv
from sparkserve.doctor.live import diagnose_live
from sparkserve.engines import get_engine
from sparkserve.runtime.procs import stop_group

READY_TIMEOUT_S = 240.0
WINDOW_S = 4.0
PROMPT = "hello " * 50  # 151 prompt tokens for the tiny model (its /metrics count them)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(vllm_venv: Path, model_dir: Path, tmp_path: Path, *extra: str) -> Iterator[str]:
    """A second CPU vLLM with extra flags, stopped (whole process group) on exit."""
    port = _free_port()
    log_path = tmp_path / f"serve-{port}.log"
    argv = cpu_serve_argv(str(vllm_venv / "bin/vllm"), model_dir, port)
    for flag in ("--max-model-len",):  # let a test replace a flag the shared recipe sets
        if flag in extra and flag in argv:
            i = argv.index(flag)
            del argv[i : i + 2]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*argv, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ | CPU_ENV,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                errors = [line for line in log_path.read_text().splitlines() if "Error" in line and "File " not in line]
                pytest.fail(f"vllm serve {' '.join(extra)} exited {proc.returncode}:\n" + "\n".join(errors[-12:]))
            try:
                if httpx.get(base + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve {' '.join(extra)} not ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        stop_group(proc.pid, timeout=30)
        proc.wait(timeout=10)


class Load:
    """`streams` clients, each sending one completion after another until stopped (real HTTP)."""

    def __init__(self, base: str, model: str, streams: int, max_tokens: int) -> None:
        self.base, self.model, self.max_tokens = base, model, max_tokens
        self.stop = threading.Event()
        self.done = 0
        self.dropped = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(streams)]

    def _run(self) -> None:
        with httpx.Client(timeout=300.0, trust_env=False) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(
                        self.base + "/v1/completions",
                        json={"model": self.model, "prompt": PROMPT, "max_tokens": self.max_tokens, "ignore_eos": True},
                    )
                except httpx.RemoteProtocolError:  # a kept-alive connection the server closed: send again
                    self.dropped += 1
                    continue
                if r.status_code != 200:
                    self.errors.append(r.text[:200])
                    return
                self.done += 1

    def state(self) -> str:
        alive = sum(t.is_alive() for t in self.threads)
        return f"load: {alive}/{len(self.threads)} streams alive, {self.done} done, {self.dropped} dropped, errors {self.errors}"

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)
        assert not self.errors, self.errors


def _wait_for(base: str, test, what: str) -> None:
    """Until the server's own gauges show the load has taken hold (a condition, not a timing)."""
    deadline = time.monotonic() + 300  # a hang guard only: a starved host can take minutes
    while time.monotonic() < deadline:
        text = httpx.get(base + "/metrics", timeout=10).text
        if test(text):
            return
        time.sleep(0.2)
    pytest.fail(f"the load never showed {what} in /metrics")


def _gauge(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _live_cli(base: str, cwd: Path) -> tuple[int, dict]:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparkserve.cli",
            "doctor",
            "--live",
            "--url",
            base,
            "--window",
            str(WINDOW_S),
            "--json",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout or "{}") if done.returncode == 0 else {"stderr": done.stderr}


def _missed_the_load(data: dict) -> bool:
    """The doctor's reads never found a request in the server (a starved host can stall the load's streams
    for the whole short window): that window saw no load to diagnose, so the test reads another one."""
    return any(line.startswith("0.0 requests in flight on average (peak 0)")
               for f in data.get("findings", []) for line in f["evidence"])


def test_max_num_seqs_1_under_8_streams_is_requests_waiting(vllm_venv, tiny_model, tmp_path):
    with _server(vllm_venv, tiny_model, tmp_path, "--max-num-seqs", "1") as base:
        with Load(base, "tiny", streams=8, max_tokens=256) as load:
            for _ in range(3):
                _wait_for(base, lambda t: _gauge(t, "vllm:num_requests_waiting") >= 1, "a request waiting")
                code, data = _live_cli(base, tmp_path)
                if code != 0 or not _missed_the_load(data):
                    break
            after = load.state()
    assert code == 0, data
    ids = [f["cause_id"] for f in data["findings"]]
    assert ids and ids[0] == "requests_waiting", (after, [(f["cause_id"], f["evidence"]) for f in data["findings"]])
    first = data["findings"][0]
    assert set(first) == {"cause_id", "summary", "fix", "evidence"}
    assert "Raise --max-num-seqs from 1 to" in first["fix"], first  # read from the server's own command line
    assert any(line.startswith("requests waiting in") for line in first["evidence"])
    assert any("= --max-num-seqs 1" in line for line in first["evidence"])
    assert data["live"]["settings"]["max_num_seqs"] == "1"
    assert "client_bound" not in ids


def test_a_squeezed_kv_cache_under_long_requests_shows_kv_pressure(vllm_venv, tiny_model, tmp_path):
    # Three 128-token blocks (the CPU build's block size), one of them vLLM's reserved null block, hold 256
    # tokens: one 151 + 100 token request at a time, and it fills the cache.
    with _server(vllm_venv, tiny_model, tmp_path, "--num-gpu-blocks-override", "3", "--max-model-len", "256") as base:
        with Load(base, "tiny", streams=8, max_tokens=100):
            for _ in range(3):
                _wait_for(
                    base,
                    lambda t: _gauge(t, "vllm:kv_cache_usage_perc") >= 0.9 and _gauge(t, "vllm:num_requests_waiting") >= 1,
                    "a full KV cache with requests waiting",
                )
                result = diagnose_live(base, [get_engine("vllm").live_probe()], WINDOW_S)
                if (result.window.share("waiting", lambda v: v >= 1) or 0) > 0:
                    break  # else a starved host stalled the streams for the whole window: read another one
    ids = [f.cause_id for f in result.findings]
    seen = (f"waiting in {result.window.share('waiting', lambda v: v >= 1)} of reads, KV peak "
            f"{result.window.peak('kv_usage')}: {[(f.cause_id, f.evidence) for f in result.findings]}")
    assert ids, "nothing named; " + seen
    assert "kv_cache_preemption" in ids or "requests_waiting" in ids, seen
    if "kv_cache_preemption" in ids:
        kv = result.findings[ids.index("kv_cache_preemption")]
        assert "--max-num-seqs" in kv.fix and "VLLM_CPU_KVCACHE_SPACE" in kv.fix
    else:
        waiting = result.findings[ids.index("requests_waiting")]
        peak = next(line for line in waiting.evidence if line.startswith("KV cache usage peak"))
        assert int(peak.split()[4]) >= 90, waiting.evidence  # the KV evidence: the cache was full
        assert "KV cache is full" in waiting.fix
    assert "client_bound" not in ids


def test_one_request_at_a_time_is_client_bound(vllm_server, tmp_path):
    with Load(vllm_server.base_url, vllm_server.model, streams=1, max_tokens=64) as load:
        _wait_for(vllm_server.base_url, lambda t: _gauge(t, "vllm:num_requests_running") >= 1, "a running request")
        code, data = _live_cli(vllm_server.base_url, tmp_path)
        assert load.done >= 1
    assert code == 0, data
    ids = [f["cause_id"] for f in data["findings"]]
    assert ids == ["client_bound"], data
    evidence = data["findings"][0]["evidence"]
    assert "none waiting" in evidence[0]
    assert "max_num_seqs" not in data["live"]["settings"]  # the session server runs vLLM's default
    assert data["live"]["reads"] >= 2


def test_live_needs_a_server_that_answers(tmp_path):
    port = _free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparkserve.cli",
            "doctor",
            "--live",
            "--url",
            f"http://127.0.0.1:{port}",
            "--window",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"http://127.0.0.1:{port}: no engine sparkserve reads answers there" in done.stderr

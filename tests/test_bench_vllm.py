"""The load generator against the real CPU vLLM (tiny model): every load mode, both OpenAI APIs.

Short runs, no throughput thresholds: the tiny model on two noisy cores is fast but uneven.
"""

from __future__ import annotations

import json

import pytest

from bench_servers import run_bench

# --per-chunk-usage: the server counts every chunk's tokens, so the exact-count checks below hold even when a
# busy API server coalesces several tokens into one chunk (the default shape then estimates the split).
COMMON = ["-p", "32", "-o", "8", "--warmup", "1", "--per-chunk-usage"]


def _check_run(run: dict, requests: int | None = None) -> None:
    s = run["summary"]
    assert s["failed"] == 0 and s["errors"] == {}
    if requests is not None:
        assert s["completed"] == requests == len(run["requests"])
    for r in run["requests"]:
        assert r["ok"] and r["tokens_exact"]
        assert r["output_tokens"] == 8 == sum(r["chunk_tokens"])  # ignore_eos: exactly --output-len
        assert r["prompt_tokens_sent"] == 32
        assert 0 < r["ttft_ms"] <= r["e2e_ms"]
        assert r["tpot_ms"] == pytest.approx((r["e2e_ms"] - r["ttft_ms"]) / 7)
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        d = s[key]
        assert d["count"] > 0 and d["min"] <= d["p50"] <= d["p90"] <= d["p95"] <= d["p99"] <= d["max"]
    assert s["itl_ms"]["count"] == 7 * s["completed"]
    assert s["output_tokens"] == 8 * s["completed"] and s["output_tps"] > 0 and s["request_rate"] > 0


def test_concurrency_completions_api(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        ["--url", vllm_server.base_url, "--api", "openai-completions", "-c", "3", "-n", "9", *COMMON],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    run = data["runs"][0]
    _check_run(run, 9)
    assert run["load"] == {
        "mode": "concurrency",
        "concurrency": 3,
        "rate": None,
        "burstiness": 1.0,
        "label": "concurrency 3",
    }
    for r in run["requests"]:
        assert r["prompt_tokens"] == 32  # the completions API adds nothing: our count is the server's
    # The tokenizer came from the directory vLLM loaded the model from (/v1/models root).
    assert data["workload"]["tokenizer"] == str(vllm_server.model_dir / "tokenizer.json")
    assert data["workload"]["tokens_exact"] is True and data["warnings"] == []
    server = run["server"]
    assert server["source"] == "vllm-metrics"
    assert server["generation_tokens"] == 72 and server["prompt_tokens"] == 9 * 32
    assert server["prefix_cache_queries"] == 9 * 32 and server["prefix_cache_hit_rate"] is not None
    assert server["preemptions"] == 0 and server["mem_available_gib_min"] > 0
    env = data["environment"]
    assert env["engine"] == "vllm" and env["engine_version"].startswith("0.32")
    assert env["model_root"] == str(vllm_server.model_dir) and env["max_model_len"] == 2048
    assert env["server_args"]["served_model_name"] == "tiny" and env["server_args"]["enforce_eager"] is True
    assert env["server_config"]["enable_prefix_caching"] == "True"


def test_rate_poisson_chat_api(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        ["--url", vllm_server.base_url, "--api", "openai-chat", "-r", "20", "-n", "10", *COMMON], tmp_path / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    run = data["runs"][0]
    _check_run(run, 10)
    assert run["load"]["mode"] == "rate" and run["load"]["rate"] == 20 and run["load"]["concurrency"] is None
    for r in run["requests"]:
        assert r["prompt_tokens"] > 32  # the chat template wraps the 32 prompt tokens
    starts = [r["start_s"] for r in run["requests"]]
    assert starts == sorted(starts) and len(set(starts)) == 10


def test_gamma_arrivals_with_a_concurrency_cap(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        ["--url", vllm_server.base_url, "-r", "inf", "-c", "2", "-n", "6", "--burstiness", "0.5", *COMMON],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    run = data["runs"][0]
    _check_run(run, 6)
    assert run["load"]["label"] == "rate inf/s, burstiness 0.5, max 2 in flight"
    assert max(r["queue_ms"] for r in run["requests"]) > 0  # all arrived at once; the cap held four back


def test_concurrency_sweep(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        [
            "--url",
            vllm_server.base_url,
            "--api",
            "openai-completions",
            "-c",
            "1,4",
            "-n",
            "8",
            *COMMON,
            "--hardware",
            "dgx-spark",
        ],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["load"]["concurrency"] for r in data["runs"]] == [1, 4]
    for run in data["runs"]:
        _check_run(run, 8)
        plan = run["plan"]
        assert plan["available"] and plan["hardware"] == "dgx-spark" and plan["batch"] == run["load"]["concurrency"]
        assert plan["ceiling_decode_tps"] > plan["predicted_decode_tps"] > 0
        assert plan["measured_decode_tps"] == run["summary"]["decode_tps"]
        # On two busy cores vLLM's API server may flush a whole stream at once (TPOT 0, no decode rate).
        if run["summary"]["decode_tps"] is not None:
            assert plan["line"].startswith("decode ") and "tok/s ceiling" in plan["line"]
            assert plan["decode_pct_of_ceiling"] == pytest.approx(
                100 * plan["measured_decode_tps"] / plan["ceiling_decode_tps"]
            )
    assert data["summary"] == data["runs"][-1]["summary"]
    # Each point drew fresh prompts: the second found none of the first's in the prefix cache.
    assert data["runs"][1]["server"]["prefix_cache_hits"] == 0
    assert "plan: " in proc.stdout and "ceiling" in proc.stdout


def test_duration_stop(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        ["--url", vllm_server.base_url, "-c", "2", "--duration", "1.5", *COMMON], tmp_path / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    run = data["runs"][0]
    _check_run(run)
    assert run["stopped_reason"] == "duration" and data["workload"]["num_prompts"] is None
    assert run["summary"]["completed"] >= 2
    assert max(r["start_s"] for r in run["requests"]) < 1.5  # nothing was sent after the deadline


def test_rate_sweep_with_duration(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        ["--url", vllm_server.base_url, "-r", "5,10", "--duration", "1", *COMMON], tmp_path / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    assert [r["load"]["rate"] for r in data["runs"]] == [5, 10]
    for run in data["runs"]:
        _check_run(run)
        assert run["stopped_reason"] == "duration"


def test_prefix_workload_hits_the_prefix_cache(vllm_server, tmp_path) -> None:
    # vLLM on CPU caches blocks of 128 tokens: a 256-token shared prefix is two cached blocks.
    proc, data = run_bench(
        [
            "--url",
            vllm_server.base_url,
            "--api",
            "openai-completions",
            "-w",
            "prefix",
            "-p",
            "320",
            "--prefix-len",
            "256",
            "-o",
            "4",
            "-n",
            "6",
            "-c",
            "1",
        ],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    run = data["runs"][0]
    assert all(r["prompt_tokens"] == 320 for r in run["requests"])
    assert run["server"]["prefix_cache_hits"] >= 5 * 256  # every request after the warm-up reuses the prefix
    assert data["workload"]["prefix_len"] == 256 and data["workload"]["num_prefixes"] == 1


@pytest.mark.parametrize("api", ["openai-chat", "openai-completions"])
def test_multiturn_conversations_carry_their_history(vllm_server, tmp_path, api: str) -> None:
    proc, data = run_bench(
        [
            "--url",
            vllm_server.base_url,
            "--api",
            api,
            "-w",
            "multiturn",
            "--turns",
            "3",
            "-p",
            "16",
            "-o",
            "8",
            "-n",
            "6",
            "-c",
            "2",
        ],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    requests = data["runs"][0]["requests"]
    assert len(requests) == 6 and all(r["ok"] for r in requests)
    by_session: dict[int, list[dict]] = {}
    for r in requests:
        by_session.setdefault(r["session"], []).append(r)
    assert len(by_session) == 2
    for turns in by_session.values():
        turns.sort(key=lambda r: r["turn"])
        assert [r["turn"] for r in turns] == [0, 1, 2]
        sizes = [r["prompt_tokens"] for r in turns]
        assert sizes[0] < sizes[1] < sizes[2]  # each turn re-sends the conversation so far
        assert sizes[1] >= sizes[0] + 8 + 16


def test_sharegpt_file_workload(vllm_server, tmp_path) -> None:
    words = "the quick brown fox jumps over the lazy dog and keeps running far away".split()
    entries = [
        {
            "id": str(i),
            "conversations": [
                {"from": "human", "value": " ".join(words[: 6 + i])},
                {"from": "gpt", "value": " ".join(words[: 4 + i])},
            ],
        }
        for i in range(5)
    ] + [{"id": "bad", "conversations": [{"from": "gpt", "value": "no human turn"}]}]
    dataset = tmp_path / "sharegpt.json"
    dataset.write_text(json.dumps(entries))
    proc, data = run_bench(
        [
            "--url",
            vllm_server.base_url,
            "--api",
            "openai-completions",
            "-w",
            "file",
            "--dataset",
            str(dataset),
            "-n",
            "5",
            "-c",
            "2",
        ],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    requests = data["runs"][0]["requests"]
    assert len(requests) == 5 and all(r["ok"] for r in requests)
    # Output length follows each reply's token count (ignore_eos makes the server keep to it).
    assert all(r["output_tokens"] == r["expected_output_tokens"] for r in requests)
    assert len({r["expected_output_tokens"] for r in requests}) > 1
    assert data["workload"]["dataset"] == str(dataset)


def test_explicit_tokenizer_and_slo(vllm_server, tmp_path) -> None:
    proc, data = run_bench(
        [
            "--url",
            vllm_server.base_url,
            "--tokenizer",
            str(vllm_server.model_dir),
            "-n",
            "4",
            "--slo",
            "ttft:p95<60s",
            "--slo",
            "tpot:p99<1ms",
            *COMMON,
        ],
        tmp_path / "r.json",
    )
    assert proc.returncode == 0, proc.stderr
    s = data["summary"]
    assert [x["slo"] for x in s["slo"]] == ["ttft:p95<60s", "tpot:p99<1ms"]
    assert s["slo"][0]["attained"] is True and s["slo"][0]["requests_meeting"] == 4
    assert s["good_requests"] == s["slo"][1]["requests_meeting"]
    assert "goodput" in proc.stdout


def test_a_stack_service_by_name(vllm_server, tmp_path) -> None:
    port = int(vllm_server.base_url.rsplit(":", 1)[1])
    stack = tmp_path / "sparkserve.toml"
    stack.write_text(f"""[stack]
hardware = "dgx-spark"
bind = "127.0.0.1"

[services.tiny-vllm]
engine = "vllm"
model = "{vllm_server.model_dir}"
port = {port}
runtime = "native"
args = {{ served_model_name = "tiny", max_model_len = 2048, enforce_eager = true }}
""")
    proc, data = run_bench(["--stack", str(stack), "--service", "tiny-vllm", "-n", "3", *COMMON], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert data["target"] == {
        "api": "openai-chat",
        "url": vllm_server.base_url,
        "model": "tiny",
        "engine": "vllm",
        "service": "tiny-vllm",
    }
    assert data["environment"]["server_args"] == {
        "served_model_name": "tiny",
        "max_model_len": 2048,
        "enforce_eager": True,
    }
    plan = data["runs"][0]["plan"]
    assert plan["available"] and plan["hardware"] == "dgx-spark"  # the stack's hardware profile
    assert plan["model"] == str(vllm_server.model_dir)
    missing, _ = run_bench(["--stack", str(stack), "--service", "tiny-vlm"], tmp_path / "x.json")
    assert missing.returncode == 2
    assert "no such service in" in missing.stderr and "did you mean 'tiny-vllm'?" in missing.stderr

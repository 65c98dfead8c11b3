"""vLLM's live judgements on windows of /metrics that the CPU build cannot produce on demand (long
prompts, prefix caching off, a slow GPU), built from a real CPU-vLLM /metrics text with chosen values."""

from __future__ import annotations

import re
from pathlib import Path

from sparkserve.engines.live import Window
from sparkserve.engines.vllm_doctor import VllmLiveProbe, sample_from_metrics

REAL = (Path(__file__).parent / "data" / "vllm_cpu" / "metrics-sample.txt").read_text()


def _set(text: str, name: str, value: float) -> str:
    """The real text with every sample of `name` set to `value` (labels kept)."""
    return re.sub(rf"^({re.escape(name)}\{{[^}}]*\}}) \S+$", lambda m: f"{m.group(1)} {value}", text, flags=re.M)


def _window(start: dict[str, float], end: dict[str, float], *, settings=None, plan=None, **config: str) -> Window:
    texts = []
    for values in (start, end):
        text = REAL
        for name, value in values.items():
            text = _set(text, name, value)
        for key, value in config.items():
            text = re.sub(rf'{key}="[^"]*"', f'{key}="{value}"', text)
        texts.append(text)
    return Window((sample_from_metrics(texts[0], 0.0), sample_from_metrics(texts[1], 10.0)), settings or {}, plan or {})


def _ids(window: Window) -> list[str]:
    return [f.cause_id for f in VllmLiveProbe().diagnose(window)]


def test_the_real_sample_reads_every_series_doctor_uses():
    s = sample_from_metrics(REAL, 0.0)
    for key in ("running", "waiting", "kv_usage", "preemptions", "prompt_tokens", "finished", "prefix_queries",
                "queue_s_sum", "queue_s_count", "ttft_s_sum", "prefill_s_sum", "e2e_s_sum", "itl_s_sum",
                "prompt_len_sum", "prompt_len_count"):
        assert key in s.values, key
    assert s.info["enable_prefix_caching"] in ("True", "False") and s.info["block_size"] == "128"


def test_long_prompts_and_a_small_batch_budget_are_prefill_bound():
    start = {"vllm:request_prompt_tokens_sum": 0, "vllm:request_prompt_tokens_count": 0,
             "vllm:request_prefill_time_seconds_sum": 0, "vllm:request_prefill_time_seconds_count": 0,
             "vllm:e2e_request_latency_seconds_sum": 0, "vllm:e2e_request_latency_seconds_count": 0,
             "vllm:num_requests_running": 2, "vllm:num_requests_waiting": 0}
    end = {**start, "vllm:request_prompt_tokens_sum": 10 * 6000, "vllm:request_prompt_tokens_count": 10,
           "vllm:request_prefill_time_seconds_sum": 30.0, "vllm:request_prefill_time_seconds_count": 10,
           "vllm:e2e_request_latency_seconds_sum": 40.0, "vllm:e2e_request_latency_seconds_count": 10}
    window = _window(start, end, settings={"max_num_batched_tokens": "2048", "max_num_seqs": "64"})
    findings = VllmLiveProbe().diagnose(window)
    assert findings[0].cause_id == "prefill_bound"
    assert "Raise --max-num-batched-tokens from 2048 to 8192" in findings[0].fix
    assert "prompts 6000 tokens on average" in findings[0].evidence


def test_prefix_caching_off_with_long_prompts_is_named():
    start = {"vllm:request_prompt_tokens_sum": 0, "vllm:request_prompt_tokens_count": 0}
    end = {"vllm:request_prompt_tokens_sum": 4 * 2000, "vllm:request_prompt_tokens_count": 4}
    assert "prefix_cache_unused" in _ids(_window(start, end, enable_prefix_caching="False"))
    assert "prefix_cache_unused" not in _ids(_window(start, end, enable_prefix_caching="True"))


def test_a_cache_that_is_on_but_never_hit_is_named():
    start = {"vllm:request_prompt_tokens_sum": 0, "vllm:request_prompt_tokens_count": 0,
             "vllm:prefix_cache_queries_total": 0, "vllm:prefix_cache_hits_total": 0}
    end = {"vllm:request_prompt_tokens_sum": 8 * 1500, "vllm:request_prompt_tokens_count": 8,
           "vllm:prefix_cache_queries_total": 12000, "vllm:prefix_cache_hits_total": 0}
    window = _window(start, end, enable_prefix_caching="True")
    finding = next(f for f in VllmLiveProbe().diagnose(window) if f.cause_id == "prefix_cache_unused")
    assert finding.evidence[0].startswith("prefix cache hit rate 0 %")


def test_decode_well_under_the_plan_is_below_plan_and_at_plan_is_not():
    start = {"vllm:inter_token_latency_seconds_sum": 0, "vllm:inter_token_latency_seconds_count": 0,
             "vllm:num_requests_running": 1}
    slow = {**start, "vllm:inter_token_latency_seconds_sum": 50.0, "vllm:inter_token_latency_seconds_count": 1000}
    assert "below_plan" in _ids(_window(start, slow, plan={"decode_tps": 40.0, "batch": 1.0}))
    fast = {**start, "vllm:inter_token_latency_seconds_sum": 26.0, "vllm:inter_token_latency_seconds_count": 1000}
    assert "below_plan" not in _ids(_window(start, fast, plan={"decode_tps": 40.0, "batch": 1.0}))


def test_a_counter_that_went_down_is_a_restart_not_a_rate():
    start = {"vllm:num_preemptions_total": 50}
    end = {"vllm:num_preemptions_total": 0}
    window = _window(start, end)
    assert window.delta("preemptions") is None
    assert "kv_cache_preemption" not in _ids(window)


def test_a_connection_dropped_once_is_read_again_not_a_dead_server():
    """A busy server may close a kept-alive connection as it is reused; one dropped read is tried again."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from sparkserve.doctor.live import sample

    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            served.append(self.path)
            if len(served) == 1:
                self.close_connection = True  # answer nothing: the client sees the connection drop
                return
            body = REAL.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            samples = sample(client, url, VllmLiveProbe(), 0.0, sleep=lambda _s: None)
    finally:
        server.shutdown()
        server.server_close()
    assert len(samples) == 2
    assert served == ["/metrics"] * 3
